//! `UriPart <part>`: one property of a URI, named as on .NET's `Uri` class.
//! Problems are reported in the output text (`[UriPart … error: …]`), as
//! Octostache does, rather than leaving the token unevaluated.

use super::{require, FilterResult};
use url::{Host, Url};

const PARTS: &[&str] = &[
    "absolutepath",
    "absoluteuri",
    "authority",
    "dnssafehost",
    "fragment",
    "host",
    "hostandport",
    "hostnametype",
    "isabsoluteuri",
    "isdefaultport",
    "isfile",
    "isloopback",
    "isunc",
    "path",
    "pathandquery",
    "port",
    "query",
    "scheme",
    "schemeandserver",
    "userinfo",
];

/// Default ports .NET knows per scheme (`-1` = none).
fn default_port(scheme: &str) -> i32 {
    match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "ftp" => 21,
        "gopher" => 70,
        "nntp" => 119,
        "telnet" => 23,
        "ldap" => 389,
        "mailto" => 25,
        "net.tcp" => 808,
        _ => -1,
    }
}

enum Parsed {
    Absolute(Box<Url>),
    Relative,
    /// Looks absolute but is not a valid URI: the input comes back as is.
    Invalid,
}

fn parse(s: &str) -> Parsed {
    let b = s.as_bytes();
    // Windows drive paths and UNC paths are implicit file URIs in .NET.
    let implicit_file = if b.len() >= 3
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && (b[2] == b'\\' || b[2] == b'/')
    {
        Some(format!("file:///{}", s.replace('\\', "/")))
    } else if s.starts_with("\\\\") {
        Some(format!("file:{}", s.replace('\\', "/")))
    } else {
        None
    };
    if let Some(f) = implicit_file {
        return Url::parse(&f).map_or(Parsed::Invalid, |u| Parsed::Absolute(Box::new(u)));
    }
    let has_scheme = s.split_once(':').is_some_and(|(scheme, _)| {
        scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !has_scheme {
        return Parsed::Relative;
    }
    Url::parse(s.trim()).map_or(Parsed::Invalid, |u| Parsed::Absolute(Box::new(u)))
}

/// Percent-decoding for the unescaped views (`Path`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Work on bytes: the two chars after `%` need not be ASCII.
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn apply(input: Option<&str>, args: &[String]) -> FilterResult {
    let s = require("uripart", input)?;
    let Some(part) = args.first() else {
        return Ok(Some("[UriPart error: no argument given]".to_owned()));
    };
    let url = match parse(s) {
        Parsed::Invalid => return Ok(Some(s.to_owned())),
        Parsed::Relative => None,
        Parsed::Absolute(u) => Some(u),
    };
    let key = part.to_lowercase();
    if !PARTS.contains(&key.as_str()) {
        return Ok(Some(format!(
            "[UriPart {part} error: argument '{part}' not supported]"
        )));
    }
    let Some(u) = url else {
        return Ok(Some(if key == "isabsoluteuri" {
            "false".to_owned()
        } else {
            format!("[UriPart {part} error: This operation is not supported for a relative URI.]")
        }));
    };
    Ok(Some(part_of(&u, &key)))
}

fn part_of(u: &Url, key: &str) -> String {
    let scheme = u.scheme();
    let default = default_port(scheme);
    let port = u.port().map_or(default, i32::from);
    let is_default = port == default;
    let host = u.host_str().unwrap_or("").to_owned();
    let port_suffix = if is_default || port < 0 {
        String::new()
    } else {
        format!(":{port}")
    };
    let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
    match key {
        "absolutepath" => u.path().to_owned(),
        "absoluteuri" => u.as_str().to_owned(),
        "authority" => format!("{host}{port_suffix}"),
        "dnssafehost" => match u.host() {
            Some(Host::Ipv6(a)) => a.to_string(),
            _ => unescape(&host),
        },
        "fragment" => u.fragment().map(|f| format!("#{f}")).unwrap_or_default(),
        "host" => host,
        "hostandport" => {
            if port < 0 {
                unescape(&host)
            } else {
                format!("{}:{port}", unescape(&host))
            }
        }
        "hostnametype" => match u.host() {
            Some(Host::Domain(_)) => "Dns",
            Some(Host::Ipv4(_)) => "IPv4",
            Some(Host::Ipv6(_)) => "IPv6",
            None => "Basic",
        }
        .to_owned(),
        "isabsoluteuri" => "true".to_owned(),
        "isdefaultport" => is_default.to_string(),
        "isfile" => (scheme == "file").to_string(),
        "isloopback" => match u.host() {
            Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(a)) => a.is_loopback(),
            Some(Host::Ipv6(a)) => a.is_loopback(),
            None => true,
        }
        .to_string(),
        "isunc" => (scheme == "file" && !host.is_empty()).to_string(),
        "path" => {
            if scheme == "file" && !host.is_empty() {
                // A UNC path.
                format!("\\\\{host}{}", unescape(u.path()).replace('/', "\\"))
            } else {
                unescape(u.path())
            }
        }
        "pathandquery" => format!("{}{query}", u.path()),
        "port" => port.to_string(),
        "query" => query,
        "scheme" => scheme.to_owned(),
        "schemeandserver" => format!("{scheme}://{}{port_suffix}", unescape(&host)),
        "userinfo" => match u.password() {
            Some(p) => format!("{}:{p}", u.username()),
            None => u.username().to_owned(),
        },
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply;

    fn part(uri: &str, p: &str) -> String {
        apply("UriPart", Some(uri), &[p.to_owned()])
            .expect("failed")
            .expect("no value")
    }

    #[test]
    fn parts() {
        assert_eq!(
            part("http://LOCALHOST:8080/a%20b?x=1", "Authority"),
            "localhost:8080"
        );
        assert_eq!(part("http://localhost:8080/a%20b?x=1", "Path"), "/a b");
        assert_eq!(
            part("http://localhost:8080/a%20b?x=1", "IsLoopback"),
            "true"
        );
        assert_eq!(part("http://[::1]/", "DnsSafeHost"), "::1");
        assert_eq!(part("http://[::1]/", "HostNameType"), "IPv6");
        assert_eq!(part("docs/x", "IsAbsoluteUri"), "false");
        assert_eq!(part("http://exa mple.com/", "Host"), "http://exa mple.com/");
        assert_eq!(part("\\\\server\\share\\f", "IsUnc"), "true");
        assert_eq!(part("http://a/%", "Path"), "/%");
        assert_eq!(part("http://a/%4", "Path"), "/%4");
        assert_eq!(part("xy:/%é1", "Path"), "/%é1");
    }
}
