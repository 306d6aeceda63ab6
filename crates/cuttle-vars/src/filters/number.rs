//! Number parsing and .NET numeric format strings (standard `C D E F G N P
//! R X` and custom `0 # . , % ‰ E+0 ;` formats) in the invariant culture,
//! for the `Format` filter.
//!
//! Numbers are kept as decimal digit strings, so decimals format exactly and
//! rounding is half away from zero, as .NET does for `decimal`.

use super::parse_int;

/// Which .NET type the input was read as; some formats only suit some.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum NumKind {
    Int,
    Double,
    Decimal,
}

/// `0.d1d2d3… × 10^point`, negative when `neg`. Zero has no digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Num {
    neg: bool,
    digits: Vec<u8>,
    point: i32,
    /// Fraction digits a decimal was written with (`23.40` → 2): `decimal`
    /// keeps them for its default format.
    scale: u32,
    /// Exact integer value, for the integer-only `D` and `X` formats.
    int: Option<i32>,
}

/// Largest precision or width accepted, so a format cannot ask for an
/// absurd amount of output.
const MAX_PRECISION: usize = 1000;

impl Num {
    fn from_parts(neg: bool, int_digits: &str, frac_digits: &str, scale: u32) -> Num {
        let mut digits: Vec<u8> = int_digits
            .bytes()
            .chain(frac_digits.bytes())
            .map(|b| b - b'0')
            .collect();
        let mut point = i32::try_from(int_digits.len()).unwrap_or(i32::MAX);
        let lead = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..lead);
        point -= i32::try_from(lead).unwrap_or(0);
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            point = 0;
        }
        Num {
            neg: neg && !digits.is_empty(),
            digits,
            point,
            scale,
            int: None,
        }
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    fn digit(&self, i: i32) -> u8 {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.digits.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Rounds half away from zero, keeping `keep` leading digits.
    fn round_to(&mut self, keep: i32) {
        let Ok(k) = usize::try_from(keep) else {
            // Every digit is dropped; at most it rounds up to one unit.
            if keep == 0 && self.digit(0) >= 5 {
                self.digits = vec![1];
                self.point += 1;
            } else {
                self.digits.clear();
                self.point = 0;
                self.neg = false;
            }
            return;
        };
        if k >= self.digits.len() {
            return;
        }
        let up = self.digits[k] >= 5;
        self.digits.truncate(k);
        if up {
            let mut i = k;
            loop {
                if i == 0 {
                    self.digits.insert(0, 1);
                    self.point += 1;
                    break;
                }
                i -= 1;
                if self.digits[i] == 9 {
                    self.digits[i] = 0;
                } else {
                    self.digits[i] += 1;
                    break;
                }
            }
        }
        while self.digits.last() == Some(&0) {
            self.digits.pop();
        }
        if self.digits.is_empty() {
            self.point = 0;
            self.neg = false;
        }
    }

    /// Integer-part digits (`""` when below one).
    fn int_digits(&self) -> String {
        (0..self.point.max(0))
            .map(|i| char::from(b'0' + self.digit(i)))
            .collect()
    }

    /// The first `n` fraction digits.
    fn frac_digits(&self, n: usize) -> String {
        (0..i32::try_from(n).unwrap_or(0))
            .map(|j| char::from(b'0' + self.digit(self.point + j)))
            .collect()
    }
}

/// Splits off one sign, leading or trailing, as .NET's number styles allow.
fn split_sign(s: &str) -> (bool, &str) {
    let t = s.trim();
    if let Some(r) = t.strip_prefix('-') {
        (true, r.trim_start())
    } else if let Some(r) = t.strip_prefix('+') {
        (false, r.trim_start())
    } else if let Some(r) = t.strip_suffix('-') {
        (true, r.trim_end())
    } else if let Some(r) = t.strip_suffix('+') {
        (false, r.trim_end())
    } else {
        (false, t)
    }
}

/// `decimal.TryParse`: sign, digits with `,` group separators, optional
/// `.` fraction; no exponent; at most 29 integer digits.
pub(super) fn parse_decimal(s: &str) -> Option<Num> {
    let (neg, body) = split_sign(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if !int.bytes().all(|b| b.is_ascii_digit() || b == b',')
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int: String = int.chars().filter(char::is_ascii_digit).collect();
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if int.trim_start_matches('0').len() > 29 {
        return None;
    }
    // decimal holds at most 28 fraction digits.
    let frac_kept = &frac[..frac.len().min(28)];
    let mut n = Num::from_parts(
        neg,
        &int,
        frac_kept,
        u32::try_from(frac_kept.len()).unwrap_or(28),
    );
    if frac.len() > 28 && frac.as_bytes()[28] >= b'5' {
        let mut bumped = Num::from_parts(neg, &int, frac_kept, n.scale);
        bumped.digits.push(5);
        bumped.round_to(i32::try_from(bumped.digits.len()).unwrap_or(0) - 1);
        n = Num {
            scale: n.scale,
            ..bumped
        };
    }
    Some(n)
}

/// `double.TryParse` with `Float` styles: sign, digits, `.`, exponent;
/// `,` group separators too when `thousands`. Only finite values.
fn parse_f64(s: &str, thousands: bool) -> Option<f64> {
    let (neg, body) = split_sign(s);
    let body: String = if thousands {
        body.chars().filter(|&c| c != ',').collect()
    } else {
        body.to_owned()
    };
    let b = body.as_bytes();
    let mantissa_len = b
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .count();
    let mantissa = &body[..mantissa_len];
    let exp = &body[mantissa_len..];
    let digits_ok = mantissa.bytes().filter(|&c| c == b'.').count() <= 1
        && mantissa.bytes().any(|c| c.is_ascii_digit());
    let exp_ok = exp.is_empty()
        || (exp.len() > 1 && (exp.starts_with('e') || exp.starts_with('E')) && {
            let e = exp[1..].strip_prefix(['+', '-']).unwrap_or(&exp[1..]);
            !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
        });
    if !digits_ok || !exp_ok {
        return None;
    }
    let v: f64 = body.parse().ok()?;
    let v = if neg { -v } else { v };
    v.is_finite().then_some(v)
}

/// For `AddHours`/`AddDays` amounts.
pub(super) fn parse_float(s: &str) -> Option<f64> {
    parse_f64(s, false)
}

/// `double.TryParse`, kept as the shortest digits that round-trip.
pub(super) fn parse_double(s: &str) -> Option<Num> {
    let v = parse_f64(s, true)?;
    let sci = format!("{:e}", v.abs());
    let (mant, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let mut n = Num::from_parts(v < 0.0, &digits, "", 0);
    if !n.is_zero() {
        n.point = exp + 1;
    }
    Some(n)
}

/// `int.TryParse`.
pub(super) fn parse_int32(s: &str) -> Option<Num> {
    let v = parse_int(s)?;
    let mut n = Num::from_parts(v < 0, &v.unsigned_abs().to_string(), "", 0);
    n.int = Some(v);
    Some(n)
}

/// Formats `n` with a .NET numeric format string. `None` when the format
/// does not suit the type (a .NET `FormatException`).
pub(super) fn format(n: &Num, fmt: &str, kind: NumKind) -> Option<String> {
    let b = fmt.as_bytes();
    let standard = !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.len() <= 10
        && b[1..].iter().all(u8::is_ascii_digit);
    if standard {
        let precision = if b.len() > 1 {
            Some(fmt[1..].parse::<usize>().ok()?)
        } else {
            None
        };
        if precision.is_some_and(|p| p > MAX_PRECISION) {
            return None;
        }
        return format_standard(n, char::from(b[0]), precision, kind);
    }
    if fmt.is_empty() {
        return format_standard(n, 'G', None, kind);
    }
    format_custom(n, fmt)
}

/// Inserts `,` every three digits from the right.
fn group(int: &str) -> String {
    let len = int.len();
    let mut out = String::with_capacity(len + len / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (len - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Fixed-point text with `decimals` fraction digits, optionally grouped.
fn fixed(n: &Num, decimals: usize, grouped: bool) -> (bool, String) {
    let mut r = n.clone();
    r.round_to(r.point.saturating_add(i32::try_from(decimals).unwrap_or(0)));
    let mut int = r.int_digits();
    if int.is_empty() {
        int.push('0');
    }
    let mut out = if grouped { group(&int) } else { int };
    if decimals > 0 {
        out.push('.');
        out.push_str(&r.frac_digits(decimals));
    }
    (r.neg, out)
}

fn exponent_text(exp: i32, min_digits: usize, always_sign: bool) -> String {
    let sign = if exp < 0 {
        "-"
    } else if always_sign {
        "+"
    } else {
        ""
    };
    format!("{sign}{:0min_digits$}", exp.unsigned_abs())
}

/// `d.ddd…E+xxx` with `decimals` digits after the point.
fn scientific(n: &Num, decimals: usize, e: char, exp_digits: usize, trim: bool) -> (bool, String) {
    let mut r = n.clone();
    r.round_to(i32::try_from(decimals).unwrap_or(0) + 1);
    let exp = if r.is_zero() { 0 } else { r.point - 1 };
    let mut mant = String::new();
    mant.push(char::from(b'0' + r.digit(0)));
    let mut frac: String = (1..=i32::try_from(decimals).unwrap_or(0))
        .map(|i| char::from(b'0' + r.digit(i)))
        .collect();
    if trim {
        frac = frac.trim_end_matches('0').to_owned();
    }
    if !frac.is_empty() {
        mant.push('.');
        mant.push_str(&frac);
    }
    (
        r.neg,
        format!("{mant}{e}{}", exponent_text(exp, exp_digits, true)),
    )
}

fn signed((neg, s): (bool, String)) -> String {
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

fn format_standard(n: &Num, spec: char, precision: Option<usize>, kind: NumKind) -> Option<String> {
    let upper = spec.is_ascii_uppercase();
    Some(match spec.to_ascii_uppercase() {
        'C' => {
            let (neg, s) = fixed(n, precision.unwrap_or(2), true);
            // Invariant culture: `¤n`, negative `(¤n)`.
            if neg {
                format!("(¤{s})")
            } else {
                format!("¤{s}")
            }
        }
        'D' => {
            n.int?;
            let digits = n.int_digits();
            let width = precision.unwrap_or(0);
            signed((
                n.neg,
                format!("{:0>width$}", if digits.is_empty() { "0" } else { &digits }),
            ))
        }
        'E' => signed(scientific(
            n,
            precision.unwrap_or(6),
            if upper { 'E' } else { 'e' },
            3,
            false,
        )),
        'F' => signed(fixed(n, precision.unwrap_or(2), false)),
        'N' => signed(fixed(n, precision.unwrap_or(2), true)),
        'P' => {
            let mut p = n.clone();
            if !p.is_zero() {
                p.point += 2;
            }
            let (neg, s) = fixed(&p, precision.unwrap_or(2), true);
            signed((neg, format!("{s} %")))
        }
        'G' => general(n, precision.filter(|&p| p > 0), kind, upper),
        'R' if kind == NumKind::Double => general(n, None, kind, upper),
        'R' if kind == NumKind::Int => general(n, None, kind, upper),
        'X' => {
            let v = n.int?;
            // Negative values are written in two's complement.
            let hex = if upper {
                format!("{:X}", v as u32)
            } else {
                format!("{:x}", v as u32)
            };
            let width = precision.unwrap_or(0);
            format!("{hex:0>width$}")
        }
        _ => return None,
    })
}

/// The `G` format: fixed or scientific, whichever is shorter for the
/// precision; without one, decimals keep their written scale.
fn general(n: &Num, precision: Option<usize>, kind: NumKind, upper: bool) -> String {
    let e = if upper { 'E' } else { 'e' };
    if precision.is_none() && kind == NumKind::Decimal {
        let mut s = if n.int_digits().is_empty() {
            "0".to_owned()
        } else {
            n.int_digits()
        };
        if n.scale > 0 {
            s.push('.');
            s.push_str(&n.frac_digits(n.scale as usize));
        }
        return signed((n.neg, s));
    }
    // Doubles round-trip with their shortest digits; their cut-over to
    // scientific is at 15 digits.
    let p = precision.unwrap_or(if kind == NumKind::Double {
        15
    } else {
        usize::MAX
    });
    let mut r = n.clone();
    if let Some(p) = precision {
        r.round_to(i32::try_from(p).unwrap_or(i32::MAX));
    }
    let exp = if r.is_zero() { 0 } else { r.point - 1 };
    if exp >= i32::try_from(p).unwrap_or(i32::MAX) || exp < -4 {
        let (neg, s) = scientific(&r, r.digits.len().saturating_sub(1), e, 2, true);
        return signed((neg, s));
    }
    let mut s = if r.int_digits().is_empty() {
        "0".to_owned()
    } else {
        r.int_digits()
    };
    let frac_len =
        usize::try_from(i32::try_from(r.digits.len()).unwrap_or(0) - r.point).unwrap_or(0);
    if frac_len > 0 {
        s.push('.');
        s.push_str(&r.frac_digits(frac_len));
    }
    signed((r.neg, s))
}

/// One item of a custom numeric format.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Zero,
    Hash,
    Point,
    Comma,
    Percent,
    Permille,
    Exp {
        e: char,
        always_sign: bool,
        digits: usize,
    },
    Lit(String),
}

/// Splits a custom format into its `;` sections, each tokenised.
fn tokenize(fmt: &str) -> Option<Vec<Vec<Item>>> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut sections = vec![Vec::new()];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let cur = sections.last_mut()?;
        match c {
            '0' => cur.push(Item::Zero),
            '#' => cur.push(Item::Hash),
            '.' => cur.push(Item::Point),
            ',' => cur.push(Item::Comma),
            '%' => cur.push(Item::Percent),
            '‰' => cur.push(Item::Permille),
            ';' => sections.push(Vec::new()),
            '\\' => {
                i += 1;
                if let Some(&n) = chars.get(i) {
                    cur.push(Item::Lit(n.to_string()));
                }
            }
            '\'' | '"' => {
                // An unclosed quote runs to the end.
                let close = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .map_or(chars.len(), |p| i + 1 + p);
                cur.push(Item::Lit(chars[i + 1..close].iter().collect()));
                i = close;
            }
            'E' | 'e' => {
                let mut j = i + 1;
                let mut always_sign = false;
                if matches!(chars.get(j), Some('+') | Some('-')) {
                    always_sign = chars[j] == '+';
                    j += 1;
                }
                let zeros = chars[j.min(chars.len())..]
                    .iter()
                    .take_while(|&&x| x == '0')
                    .count();
                if zeros > 0 {
                    cur.push(Item::Exp {
                        e: c,
                        always_sign,
                        digits: zeros.min(MAX_PRECISION),
                    });
                    i = j + zeros - 1;
                } else {
                    cur.push(Item::Lit(c.to_string()));
                }
            }
            _ => cur.push(Item::Lit(c.to_string())),
        }
        i += 1;
    }
    Some(sections)
}

fn format_custom(n: &Num, fmt: &str) -> Option<String> {
    let sections = tokenize(fmt)?;
    if sections.iter().map(Vec::len).sum::<usize>() > 10 * MAX_PRECISION {
        return None;
    }
    // A negative section writes its own sign; an empty one means the first.
    let pick = |i: usize| sections.get(i).filter(|s| !s.is_empty());
    let (section, sign_from_section) = if n.neg {
        match pick(1) {
            Some(s) => (s, true),
            None => (&sections[0], false),
        }
    } else if n.is_zero() {
        (pick(2).unwrap_or(&sections[0]), false)
    } else {
        (&sections[0], false)
    };
    let items = section;
    let point_at = items.iter().position(|x| *x == Item::Point);
    let exp_at = items.iter().position(|x| matches!(x, Item::Exp { .. }));
    let number_end = exp_at.unwrap_or(items.len());
    let is_digit = |x: &Item| matches!(x, Item::Zero | Item::Hash);
    let int_end = point_at.unwrap_or(number_end).min(number_end);
    let int_places = items[..int_end].iter().filter(|x| is_digit(x)).count();
    let frac_items = point_at.map_or(&items[0..0], |p| &items[p.min(number_end)..number_end]);
    let frac_places = frac_items.iter().filter(|x| is_digit(x)).count();
    let frac_digit_items: Vec<&Item> = frac_items.iter().filter(|x| is_digit(x)).collect();
    let min_frac = frac_digit_items
        .iter()
        .rposition(|x| **x == Item::Zero)
        .map_or(0, |p| p + 1);
    let first_int_zero = items[..int_end]
        .iter()
        .filter(|x| is_digit(x))
        .position(|x| *x == Item::Zero);
    let min_int = first_int_zero.map_or(0, |p| int_places - p);
    // Commas right before the point (or the end of the digits) scale by
    // 1000 each; a comma between integer placeholders turns on grouping.
    let last_int_digit = items[..int_end].iter().rposition(&is_digit);
    let first_int_digit = items[..int_end].iter().position(is_digit);
    let scaling = last_int_digit.map_or(0, |l| {
        items[l + 1..int_end]
            .iter()
            .filter(|x| **x == Item::Comma)
            .count()
    });
    let grouped = match (first_int_digit, last_int_digit) {
        (Some(f), Some(l)) => items[f..l].contains(&Item::Comma),
        _ => false,
    };
    let percents = items.iter().filter(|x| **x == Item::Percent).count();
    let permilles = items.iter().filter(|x| **x == Item::Permille).count();

    let mut r = n.clone();
    if !r.is_zero() {
        let shift = 2 * percents + 3 * permilles;
        r.point = r
            .point
            .saturating_add(i32::try_from(shift).unwrap_or(0))
            .saturating_sub(i32::try_from(3 * scaling).unwrap_or(0));
    }
    let mut exponent = 0;
    if exp_at.is_some() && !r.is_zero() {
        let places = i32::try_from(int_places.max(1)).unwrap_or(1);
        let places = if int_places == 0 { 0 } else { places };
        exponent = r.point - places;
        r.point = places;
    }
    r.round_to(
        r.point
            .saturating_add(i32::try_from(frac_places).unwrap_or(0)),
    );
    if exp_at.is_some() && !r.is_zero() {
        // Rounding up may add a digit: renormalise.
        let places = i32::try_from(int_places).unwrap_or(0);
        if r.point > places && places > 0 {
            exponent += r.point - places;
            r.point = places;
        }
    }
    let mut idigits = r.int_digits();
    if idigits.len() < min_int {
        idigits = format!("{idigits:0>min_int$}");
    }
    let mut fdigits = r.frac_digits(frac_places);
    while fdigits.len() > min_frac && fdigits.ends_with('0') {
        fdigits.pop();
    }

    let mut out = String::new();
    if r.neg && !sign_from_section {
        out.push('-');
    }
    let idig: Vec<char> = idigits.chars().collect();
    // Integer digits fill the placeholders from the right; any extra ones
    // are written at the first placeholder.
    let excess = idig.len().saturating_sub(int_places);
    let mut int_seen = 0usize; // integer placeholders passed
    let mut frac_seen = 0usize;
    let mut after_point = false;
    let mut point_written = false;
    let fchars: Vec<char> = fdigits.chars().collect();
    let push_int_digit = |out: &mut String, idx: usize| {
        out.push(idig[idx]);
        let right = idig.len() - 1 - idx;
        if grouped && right > 0 && right.is_multiple_of(3) {
            out.push(',');
        }
    };
    for (pos, item) in items.iter().enumerate() {
        match item {
            Item::Zero | Item::Hash if !after_point && pos < number_end => {
                if int_seen == 0 {
                    for idx in 0..excess {
                        push_int_digit(&mut out, idx);
                    }
                }
                // Placeholders left of the number's first digit stay empty.
                if let Some(slot) = (int_seen + idig.len()).checked_sub(int_places) {
                    push_int_digit(&mut out, slot);
                }
                int_seen += 1;
            }
            Item::Zero | Item::Hash if pos < number_end => {
                if let Some(&d) = fchars.get(frac_seen) {
                    if !point_written {
                        out.push('.');
                        point_written = true;
                    }
                    out.push(d);
                }
                frac_seen += 1;
            }
            Item::Point if pos < number_end => after_point = true,
            Item::Comma => {}
            Item::Percent => out.push('%'),
            Item::Permille => out.push('‰'),
            Item::Exp {
                e,
                always_sign,
                digits,
            } => {
                out.push(*e);
                out.push_str(&exponent_text(exponent, *digits, *always_sign));
            }
            Item::Lit(s) => out.push_str(s),
            Item::Zero | Item::Hash | Item::Point => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str, f: &str) -> Option<String> {
        format(&parse_decimal(s)?, f, NumKind::Decimal)
    }

    fn dbl(s: &str, f: &str) -> Option<String> {
        format(&parse_double(s)?, f, NumKind::Double)
    }

    fn int(s: &str, f: &str) -> Option<String> {
        format(&parse_int32(s)?, f, NumKind::Int)
    }

    #[test]
    fn standard_formats() {
        assert_eq!(dec("23.4", "C").as_deref(), Some("¤23.40"));
        assert_eq!(dec("-1234.5", "N1").as_deref(), Some("-1,234.5"));
        assert_eq!(dec("2.345", "F2").as_deref(), Some("2.35"));
        assert_eq!(dec("-2.345", "F2").as_deref(), Some("-2.35"));
        assert_eq!(dec("0.5", "P0").as_deref(), Some("50 %"));
        assert_eq!(dec("23.40", "G").as_deref(), Some("23.40"));
        assert_eq!(dec("1234.5678", "G3").as_deref(), Some("1.23E+03"));
        assert_eq!(dec("1234.5678", "E2").as_deref(), Some("1.23E+003"));
        assert_eq!(dec("9.99", "F1").as_deref(), Some("10.0"));
        assert_eq!(dec("0.001", "F2").as_deref(), Some("0.00"));
        assert_eq!(dbl("1e20", "G").as_deref(), Some("1E+20"));
        assert_eq!(dbl("0.1", "R").as_deref(), Some("0.1"));
        assert_eq!(dbl("0.00001", "G").as_deref(), Some("1E-05"));
        assert_eq!(int("255", "X4").as_deref(), Some("00FF"));
        assert_eq!(int("-1", "x").as_deref(), Some("ffffffff"));
        assert_eq!(int("-42", "D5").as_deref(), Some("-00042"));
        assert_eq!(dec("1.5", "D"), None);
        assert_eq!(dec("1", "F99999"), None);
        assert_eq!(dec("1", "Q"), None);
    }

    #[test]
    fn custom_formats() {
        assert_eq!(dec("1234.567", "#,##0.00").as_deref(), Some("1,234.57"));
        assert_eq!(dec("1234567", "#,#").as_deref(), Some("1,234,567"));
        assert_eq!(dec("0.5", "#.##").as_deref(), Some(".5"));
        assert_eq!(dec("0", "#").as_deref(), Some(""));
        assert_eq!(dec("5", "000").as_deref(), Some("005"));
        assert_eq!(dec("1234567", "0,,").as_deref(), Some("1"));
        assert_eq!(dec("0.256", "0.0%").as_deref(), Some("25.6%"));
        assert_eq!(dec("-5", "0;(0)").as_deref(), Some("(5)"));
        assert_eq!(dec("0", "0;(0);zero").as_deref(), Some("zero"));
        assert_eq!(dec("1234", "0.00E+0").as_deref(), Some("1.23E+3"));
        assert_eq!(
            dec("5551234567", "(###) ###-####").as_deref(),
            Some("(555) 123-4567")
        );
        assert_eq!(dec("12", "'#'0 \\x").as_deref(), Some("#12 x"));
        assert_eq!(
            dec("1.5", "0.0 \"unclosed").as_deref(),
            Some("1.5 unclosed")
        );
    }

    #[test]
    fn parsing() {
        assert!(parse_decimal("1,234.5").is_some());
        assert!(parse_decimal(" -3 ").is_some());
        assert!(parse_decimal("1e5").is_none());
        assert!(parse_decimal("2030/05/22").is_none());
        assert!(parse_decimal(".").is_none());
        assert!(parse_decimal(&"9".repeat(40)).is_none());
        assert_eq!(parse_float("1.5"), Some(1.5));
        assert_eq!(parse_float("-2e1"), Some(-20.0));
        assert_eq!(parse_float("inf"), None);
        assert_eq!(parse_float("1,5"), None);
    }
}
