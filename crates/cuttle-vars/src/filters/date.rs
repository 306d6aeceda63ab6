//! Dates: `NowDate`, `NowDateUtc`, `AddHours`, `AddDays` and `Format`
//! (numbers are formatted in `number.rs`). Parsing and formatting follow
//! .NET's `DateTime`/`DateTimeOffset` in the invariant (English) culture.

use super::number;
use super::{FilterError, FilterResult};
use chrono::{
    Datelike, Duration, Local, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use regex::Regex;
use std::sync::OnceLock;

/// How a value relates to UTC, like .NET's `DateTimeKind` plus
/// `DateTimeOffset`'s explicit offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// No zone information (`DateTimeKind.Unspecified`).
    Unspecified,
    /// A UTC `DateTime`, written with `Z`.
    Utc,
    /// A `DateTime` in the server's local zone.
    Local,
    /// A `DateTimeOffset` with this offset in seconds.
    Offset(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DateValue {
    pub dt: NaiveDateTime,
    pub kind: Kind,
}

/// What the text said about its zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zone {
    None,
    Utc,
    Offset(i32),
}

/// The server's UTC offset (seconds) at a local wall-clock time.
fn local_offset(dt: &NaiveDateTime) -> i32 {
    Local
        .offset_from_local_datetime(dt)
        .earliest()
        .map_or(0, |o| o.fix().local_minus_utc())
}

/// The server's UTC offset (seconds) at a UTC time.
fn local_offset_at_utc(dt: &NaiveDateTime) -> i32 {
    Local.offset_from_utc_datetime(dt).fix().local_minus_utc()
}

fn shift(dt: NaiveDateTime, secs: i32) -> Option<NaiveDateTime> {
    dt.checked_add_signed(Duration::seconds(i64::from(secs)))
}

/// `DateTime.TryParse` (default styles): a zone in the text converts the
/// value to local time.
pub(super) fn parse_datetime(s: &str) -> Option<DateValue> {
    let (dt, zone) = parse(s)?;
    Some(match zone {
        Zone::None => DateValue {
            dt,
            kind: Kind::Unspecified,
        },
        Zone::Utc | Zone::Offset(_) => {
            let utc = shift(dt, -zone_offset(zone))?;
            DateValue {
                dt: shift(utc, local_offset_at_utc(&utc))?,
                kind: Kind::Local,
            }
        }
    })
}

/// `DateTime.TryParse` with `RoundtripKind`: `Z` stays UTC.
fn parse_datetime_roundtrip(s: &str) -> Option<DateValue> {
    let (dt, zone) = parse(s)?;
    match zone {
        Zone::Utc => Some(DateValue {
            dt,
            kind: Kind::Utc,
        }),
        _ => parse_datetime(s),
    }
}

/// `DateTimeOffset.TryParse`: no zone in the text means the local zone.
pub(super) fn parse_offset(s: &str) -> Option<DateValue> {
    let (dt, zone) = parse(s)?;
    let off = match zone {
        Zone::None => local_offset(&dt),
        z => zone_offset(z),
    };
    Some(DateValue {
        dt,
        kind: Kind::Offset(off),
    })
}

fn zone_offset(z: Zone) -> i32 {
    match z {
        Zone::Offset(o) => o,
        _ => 0,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A month name or its three-letter abbreviation, any case.
fn month_number(name: &str) -> Option<u32> {
    let lower = name.to_lowercase();
    (1u32..)
        .zip(MONTHS)
        .find(|(_, m)| {
            let m = m.to_lowercase();
            lower == m
                || (lower.len() == 3 && m.starts_with(&lower))
                || (lower == "sept" && m == "september")
        })
        .map(|(i, _)| i)
}

/// .NET's two-digit year window (up to 2049).
fn full_year(y: &str) -> Option<i32> {
    let n: i32 = y.parse().ok()?;
    Some(if y.len() <= 2 {
        if n <= 49 {
            2000 + n
        } else {
            1900 + n
        }
    } else {
        n
    })
}

/// The whole-text pattern, and the date shapes with their part orders.
type DateRegexes = (Regex, Vec<(Regex, &'static str)>);

fn regexes() -> Option<&'static DateRegexes> {
    static RE: OnceLock<Option<DateRegexes>> = OnceLock::new();
    RE.get_or_init(|| {
        let whole = Regex::new(
            r"(?ix)^\s*
            (?:(?:sun|mon|tue|wed|thu|fri|sat)[a-z]*\.?,?\s*)?
            (?P<date>.*?)
            (?:\s*[T\s]\s*|^)?
            (?:(?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:[.,](?P<f>\d+))?)?
               \s*(?P<ampm>[ap]\.?m?\.?)?
               \s*(?P<tz>z|gmt|utc|[+-]\d{1,2}(?::?\d{2})?)?
            )?\s*$",
        )
        .ok()?;
        // Date shapes, each with the order of its year (y), month (m or
        // month name n) and day (d) groups.
        let shapes = [
            (r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$", "ymd"),
            (r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})$", "mdy"),
            (
                r"^(\d{1,2})[-/.\s]+([a-z]+)\.?,?[-/.\s]+(\d{4}|\d{2})$",
                "dny",
            ),
            (
                r"^([a-z]+)\.?[-/.\s]+(\d{1,2}),?[-/.\s]+(\d{4}|\d{2})$",
                "ndy",
            ),
            (r"^(\d{4})[-/.\s]+([a-z]+)\.?[-/.\s]+(\d{1,2})$", "ynd"),
            (r"^(\d{1,2})[-/.](\d{1,2})$", "md"),
            (r"^([a-z]+)\.?,?\s+(\d{4})$", "ny"),
            (r"^(\d{1,2})\s+([a-z]+)\.?$", "dn"),
            (r"^([a-z]+)\.?\s+(\d{1,2})$", "nd"),
            (r"^$", ""),
        ];
        let mut out = Vec::new();
        for (p, order) in shapes {
            out.push((Regex::new(&format!("(?i){p}")).ok()?, order));
        }
        Some((whole, out))
    })
    .as_ref()
}

/// Parses the date and time forms .NET accepts in an English culture:
/// ISO 8601, `yyyy/MM/dd`, `MM/dd/yyyy`, `22 May 2030`, `May 22, 2030`,
/// RFC 1123, with an optional time (24-hour or AM/PM) and zone.
fn parse(s: &str) -> Option<(NaiveDateTime, Zone)> {
    let (whole, shapes) = regexes()?;
    // Bounded input: nothing date-like is this long.
    if s.len() > 200 {
        return None;
    }
    let c = whole.captures(s)?;
    let date_text = c.name("date").map_or("", |m| m.as_str()).trim();
    let has_time = c.name("h").is_some();
    let mut date = None;
    for (re, order) in shapes {
        let Some(d) = re.captures(date_text) else {
            continue;
        };
        if order.is_empty() {
            // A time alone is today's date.
            if !has_time {
                return None;
            }
            date = Some(Local::now().date_naive());
            break;
        }
        let (mut y, mut m, mut day) = (Local::now().year(), 0u32, 1u32);
        for (i, part) in order.chars().enumerate() {
            let text = d.get(i + 1)?.as_str();
            match part {
                'y' => y = full_year(text)?,
                'm' => m = text.parse().ok()?,
                'n' => m = month_number(text)?,
                _ => day = text.parse().ok()?,
            }
        }
        date = Some(NaiveDate::from_ymd_opt(y, m, day)?);
        break;
    }
    let date = date?;
    let num =
        |name: &str| -> Option<u32> { c.name(name).map_or(Some(0), |m| m.as_str().parse().ok()) };
    let mut hour = num("h")?;
    let (minute, second) = (num("mi")?, num("s")?);
    if let Some(ampm) = c.name("ampm") {
        if !(1..=12).contains(&hour) {
            return None;
        }
        let pm = ampm.as_str().to_ascii_lowercase().starts_with('p');
        hour = match (pm, hour) {
            (false, 12) => 0,
            (true, 12) => 12,
            (true, h) => h + 12,
            (false, h) => h,
        };
    }
    // Up to 7 fractional digits count (.NET's tick precision).
    let nanos = c.name("f").map_or(0, |f| {
        let digits: String = f.as_str().chars().take(7).collect();
        let padded = format!("{digits:0<9}");
        padded.parse::<u32>().unwrap_or(0)
    });
    let dt = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    let zone = match c.name("tz").map(|m| m.as_str()) {
        None => Zone::None,
        Some(z)
            if z.eq_ignore_ascii_case("z")
                || z.eq_ignore_ascii_case("gmt")
                || z.eq_ignore_ascii_case("utc") =>
        {
            Zone::Utc
        }
        Some(z) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(char::is_ascii_digit).collect();
            let (h, m) = if digits.len() > 2 {
                (
                    digits[..digits.len() - 2].parse::<i32>().ok()?,
                    digits[digits.len() - 2..].parse::<i32>().ok()?,
                )
            } else {
                (digits.parse::<i32>().ok()?, 0)
            };
            if h > 14 || m > 59 {
                return None;
            }
            Zone::Offset(sign * (h * 3600 + m * 60))
        }
    };
    Some((dt, zone))
}

pub(super) fn apply(f: &str, input: Option<&str>, args: &[String]) -> FilterResult {
    match f {
        "nowdate" | "nowdateutc" => {
            if input.is_some() || args.len() > 1 {
                return Err(FilterError::bad(f, "takes no input and at most one option"));
            }
            // .NET clocks tick in 100 ns steps.
            let now = if f == "nowdate" {
                Local::now().naive_local()
            } else {
                Utc::now().naive_utc()
            };
            let now = now
                .with_nanosecond(now.nanosecond() / 100 * 100)
                .unwrap_or(now);
            let kind = if f == "nowdate" {
                Kind::Unspecified
            } else {
                Kind::Utc
            };
            let fmt = args.first().map_or("O", String::as_str);
            format_date(&DateValue { dt: now, kind }, fmt)
                .map(Some)
                .ok_or_else(|| FilterError::bad(f, "bad format"))
        }
        "addhours" | "adddays" => add(f, input, args),
        _ => format(input, args),
    }
}

/// Shifts a date by a (fractional) number of hours or days, writing the
/// result in round-trip form. Offset-less and UTC inputs keep their kind; an
/// explicit offset is kept rather than converted to local time.
fn add(f: &str, input: Option<&str>, args: &[String]) -> FilterResult {
    let bad = |why: &str| FilterError::bad(f, why.to_owned());
    let s = input.ok_or_else(|| bad("no input value"))?;
    let [amount] = args else {
        return Err(bad("expects exactly one option"));
    };
    let amount = number::parse_float(amount).ok_or_else(|| bad("amount is not a number"))?;
    let unit_ms = if f == "addhours" {
        3_600_000.0
    } else {
        86_400_000.0
    };
    // .NET's TimeSpan.FromHours/FromDays round to whole milliseconds and
    // reject spans beyond about 29,000 years.
    let ms = (amount * unit_ms).round();
    if !ms.is_finite() || ms.abs() > 9.2e14 {
        return Err(bad("amount out of range"));
    }
    // Within ±9.2e14 the float holds an exact integer.
    let span = Duration::milliseconds(ms as i64);
    let value = match parse_datetime_roundtrip(s) {
        Some(v) if v.kind != Kind::Local => v,
        _ => parse_offset(s).ok_or_else(|| bad("input is not a date"))?,
    };
    let dt = value
        .dt
        .checked_add_signed(span)
        .ok_or_else(|| bad("result out of range"))?;
    if !(1..=9999).contains(&dt.year()) {
        return Err(bad("result out of range"));
    }
    format_date(
        &DateValue {
            dt,
            kind: value.kind,
        },
        "O",
    )
    .map(Some)
    .ok_or_else(|| bad("bad format"))
}

/// `Format [type] format`: with one option a number is tried first, then a
/// date; with two the type (`int`, `double`, `decimal`, `date`, `datetime`,
/// `datetimeoffset`) says how to read the input.
fn format(input: Option<&str>, args: &[String]) -> FilterResult {
    let bad = |why: &str| FilterError::bad("format", why.to_owned());
    let s = input.ok_or_else(|| bad("no input value"))?;
    let out = match args {
        [fmt] => match number::parse_decimal(s) {
            Some(n) => number::format(&n, fmt, number::NumKind::Decimal),
            None => parse_offset(s).and_then(|d| format_date(&d, fmt)),
        },
        [ty, fmt] => match ty.to_lowercase().as_str() {
            "int" | "int32" => {
                number::parse_int32(s).and_then(|n| number::format(&n, fmt, number::NumKind::Int))
            }
            "double" => number::parse_double(s)
                .and_then(|n| number::format(&n, fmt, number::NumKind::Double)),
            "decimal" => number::parse_decimal(s)
                .and_then(|n| number::format(&n, fmt, number::NumKind::Decimal)),
            "date" | "datetime" => parse_datetime(s).and_then(|d| format_date(&d, fmt)),
            "datetimeoffset" => parse_offset(s).and_then(|d| format_date(&d, fmt)),
            _ => None,
        },
        _ => return Err(bad("expects one or two options")),
    };
    out.map(Some)
        .ok_or_else(|| bad("input or format not usable"))
}

/// The offset written for `z`/`zzz`: the explicit one, zero for UTC,
/// otherwise the server's local offset.
fn offset_of(v: &DateValue) -> i32 {
    match v.kind {
        Kind::Offset(o) => o,
        Kind::Utc => 0,
        Kind::Unspecified | Kind::Local => local_offset(&v.dt),
    }
}

fn write_offset(out: &mut String, secs: i32, width: usize) {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m) = (a / 3600, a % 3600 / 60);
    match width {
        1 => out.push_str(&format!("{sign}{h}")),
        2 => out.push_str(&format!("{sign}{h:02}")),
        _ => out.push_str(&format!("{sign}{h:02}:{m:02}")),
    }
}

/// The value in UTC, for the `R` and `u` formats.
fn to_utc(v: &DateValue) -> DateValue {
    let dt = match v.kind {
        Kind::Unspecified | Kind::Utc => v.dt,
        _ => shift(v.dt, -offset_of(v)).unwrap_or(v.dt),
    };
    DateValue {
        dt,
        kind: Kind::Utc,
    }
}

/// Formats with a .NET standard (one letter) or custom date format, in the
/// invariant culture. `None` for an invalid format.
pub(super) fn format_date(v: &DateValue, fmt: &str) -> Option<String> {
    let mut chars = fmt.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        let is_offset = matches!(v.kind, Kind::Offset(_));
        let custom = match c {
            'd' => "MM/dd/yyyy",
            'D' => "dddd, dd MMMM yyyy",
            'f' => "dddd, dd MMMM yyyy HH:mm",
            'F' => "dddd, dd MMMM yyyy HH:mm:ss",
            'g' => "MM/dd/yyyy HH:mm",
            'G' => "MM/dd/yyyy HH:mm:ss",
            'm' | 'M' => "MMMM dd",
            'o' | 'O' if is_offset => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffzzz",
            'o' | 'O' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
            'r' | 'R' => return format_custom(&to_utc(v), "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'"),
            's' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
            't' => "HH:mm",
            'T' => "HH:mm:ss",
            'u' => return format_custom(&to_utc(v), "yyyy'-'MM'-'dd HH':'mm':'ss'Z'"),
            'U' => return format_custom(&to_utc(v), "dddd, dd MMMM yyyy HH:mm:ss"),
            'y' | 'Y' => "yyyy MMMM",
            _ => return None,
        };
        return format_custom(v, custom);
    }
    format_custom(v, fmt)
}

fn format_custom(v: &DateValue, fmt: &str) -> Option<String> {
    let dt = &v.dt;
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        match c {
            'd' => {
                match run {
                    1 => out.push_str(&dt.day().to_string()),
                    2 => out.push_str(&format!("{:02}", dt.day())),
                    3 => out.push_str(&DAYS[dt.weekday().num_days_from_sunday() as usize][..3]),
                    _ => out.push_str(DAYS[dt.weekday().num_days_from_sunday() as usize]),
                }
                i += run;
            }
            'f' | 'F' => {
                if run > 7 {
                    return None;
                }
                let ticks = format!("{:07}", dt.nanosecond() / 100 % 10_000_000);
                let mut digits = ticks[..run].to_string();
                if c == 'F' {
                    digits = digits.trim_end_matches('0').to_string();
                    if digits.is_empty() && out.ends_with('.') {
                        out.pop();
                    }
                }
                out.push_str(&digits);
                i += run;
            }
            'g' => {
                out.push_str("A.D.");
                i += run;
            }
            'h' => {
                let h = match dt.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                out.push_str(&if run == 1 {
                    h.to_string()
                } else {
                    format!("{h:02}")
                });
                i += run;
            }
            'H' => {
                out.push_str(&if run == 1 {
                    dt.hour().to_string()
                } else {
                    format!("{:02}", dt.hour())
                });
                i += run;
            }
            'm' => {
                out.push_str(&if run == 1 {
                    dt.minute().to_string()
                } else {
                    format!("{:02}", dt.minute())
                });
                i += run;
            }
            's' => {
                out.push_str(&if run == 1 {
                    dt.second().to_string()
                } else {
                    format!("{:02}", dt.second())
                });
                i += run;
            }
            'M' => {
                let m = dt.month();
                let name = MONTHS[(m as usize).saturating_sub(1) % 12];
                match run {
                    1 => out.push_str(&m.to_string()),
                    2 => out.push_str(&format!("{m:02}")),
                    3 => out.push_str(&name[..3]),
                    _ => out.push_str(name),
                }
                i += run;
            }
            't' => {
                let ampm = if dt.hour() < 12 { "AM" } else { "PM" };
                out.push_str(if run == 1 { &ampm[..1] } else { ampm });
                i += run;
            }
            'y' => {
                let y = dt.year();
                match run {
                    1 => out.push_str(&(y % 100).to_string()),
                    2 => out.push_str(&format!("{:02}", y % 100)),
                    // Width is bounded by the format's own length.
                    n => out.push_str(&format!("{y:0n$}")),
                }
                i += run;
            }
            'z' => {
                write_offset(&mut out, offset_of(v), run);
                i += run;
            }
            'K' => {
                match v.kind {
                    Kind::Unspecified => {}
                    Kind::Utc => out.push('Z'),
                    _ => write_offset(&mut out, offset_of(v), 3),
                }
                i += 1;
            }
            ':' | '/' => {
                out.push(c);
                i += 1;
            }
            '\'' | '"' => {
                let close = chars[i + 1..].iter().position(|&x| x == c)?;
                out.extend(&chars[i + 1..i + 1 + close]);
                i += close + 2;
            }
            '\\' => {
                out.push(*chars.get(i + 1)?);
                i += 2;
            }
            '%' => {
                // `%x` is the single custom specifier `x`; `%%` is invalid.
                let next = *chars.get(i + 1)?;
                if next == '%' {
                    return None;
                }
                // Only format_date reads one letter as a standard format.
                out.push_str(&format_custom(v, &next.to_string())?);
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::apply;
    use super::*;

    fn dv(s: &str, kind: Kind) -> DateValue {
        DateValue {
            dt: NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("test date"),
            kind,
        }
    }

    #[test]
    fn parses_common_forms() {
        let t = |s: &str| parse(s).map(|(d, _)| d.format("%Y-%m-%d %H:%M:%S").to_string());
        assert_eq!(
            t("2030/05/22 09:05:00").as_deref(),
            Some("2030-05-22 09:05:00")
        );
        assert_eq!(t("05/22/2030").as_deref(), Some("2030-05-22 00:00:00"));
        assert_eq!(
            t("22 May 2030 9:05 PM").as_deref(),
            Some("2030-05-22 21:05:00")
        );
        assert_eq!(
            t("Wed, 22 May 2030 09:05:00 GMT").as_deref(),
            Some("2030-05-22 09:05:00")
        );
        assert_eq!(t("May 22, 2030").as_deref(), Some("2030-05-22 00:00:00"));
        assert_eq!(
            t("2030-05-22T09:05:00.1234567+02:00").as_deref(),
            Some("2030-05-22 09:05:00")
        );
        assert_eq!(t("hello World"), None);
        assert_eq!(t("2030-13-01"), None);
        assert_eq!(t("12"), None);
        assert_eq!(
            parse("2030-05-22T09:05:00-0530").map(|p| p.1),
            Some(Zone::Offset(-19800))
        );
    }

    #[test]
    fn formats() {
        let v = dv("2030-05-02 21:05:09.120", Kind::Offset(3600));
        assert_eq!(
            format_date(&v, "O").as_deref(),
            Some("2030-05-02T21:05:09.1200000+01:00")
        );
        assert_eq!(
            format_date(&v, "d MMM yy h:m:s tt zz").as_deref(),
            Some("2 May 30 9:5:9 PM +01")
        );
        assert_eq!(
            format_date(&v, "dddd 'at' HH\\h FFF|fff").as_deref(),
            Some("Thursday at 21h 12|120")
        );
        assert_eq!(format_date(&v, "ss.FF").as_deref(), Some("09.12"));
        assert_eq!(format_date(&v, "%d").as_deref(), Some("2"));
        assert_eq!(
            format_date(&v, "u").as_deref(),
            Some("2030-05-02 20:05:09Z")
        );
        assert_eq!(format_date(&v, "ffffffff"), None);
        assert_eq!(format_date(&v, "'open"), None);
        assert_eq!(format_date(&v, "Q"), None);
        let u = dv("2030-05-02 21:05:09", Kind::Utc);
        assert_eq!(
            format_date(&u, "O").as_deref(),
            Some("2030-05-02T21:05:09.0000000Z")
        );
        assert_eq!(format_date(&u, "ss.FF").as_deref(), Some("09"));
    }

    #[test]
    fn add_and_now() {
        let r = |f: &str, i: &str, a: &str| apply(f, Some(i), &[a.to_owned()]).ok().flatten();
        assert_eq!(
            r("AddDays", "2030-05-22T09:05:00Z", "1").as_deref(),
            Some("2030-05-23T09:05:00.0000000Z")
        );
        assert_eq!(r("AddHours", "2030-05-22 09:05:00", "1e300"), None);
        assert_eq!(r("AddHours", "9999-12-31 23:00:00", "2"), None);
        assert_eq!(r("AddHours", "2030-05-22 09:05:00", "NaN"), None);
        let now = apply("NowDateUtc", None, &[])
            .ok()
            .flatten()
            .unwrap_or_default();
        assert!(now.ends_with('Z') && now.len() == 28, "{now}");
        assert!(apply("NowDate", Some("x"), &[]).is_err());
    }
}
