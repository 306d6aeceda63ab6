//! What a script gets besides its body: the variables file, the helper
//! functions (`get_octopusvariable`, `set_octopusvariable`) defined by a
//! bootstrap that then runs the script, and the service messages those
//! helpers print to talk back to the server.
//!
//! Values never become script text: they travel base64-encoded in a file the
//! helpers decode, so no value can inject shell or Python code.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cuttle_vars::VariableDictionary;

/// The variables file, beside the script in its working directory.
pub const VARIABLES_FILE: &str = ".cuttle-variables";

/// One line per variable: base64 of the lower-cased name, a space, base64 of
/// the value. Lower-cased because variable names ignore case.
pub fn variables_file(variables: &VariableDictionary) -> String {
    let mut out = String::new();
    for (name, value) in variables.iter() {
        out.push_str(&B64.encode(name.to_lowercase()));
        out.push(' ');
        out.push_str(&B64.encode(value));
        out.push('\n');
    }
    out
}

/// Reads a variables file back into a dictionary (on an agent, to
/// substitute package files with the step's variables). Lines that do not
/// decode are skipped: the server wrote the file, so there are none.
pub fn read_variables_file(text: &str) -> VariableDictionary {
    let mut dict = VariableDictionary::new();
    let decode = |s: &str| B64.decode(s).ok().and_then(|b| String::from_utf8(b).ok());
    for line in text.lines() {
        let (name, value) = line.split_once(' ').unwrap_or((line, ""));
        if let (Some(name), Some(value)) = (decode(name), decode(value)) {
            dict.set(&name, &value);
        }
    }
    dict
}

pub const BASH_BOOTSTRAP: &str = r###"# Cuttle's helpers for Bash scripts; the script itself follows.
__cuttle_variables="$PWD/.cuttle-variables"
__cuttle_b64() { printf '%s' "$1" | base64 | tr -d '\n'; }

# get_octopusvariable NAME: prints the variable's value (nothing when undefined).
get_octopusvariable() {
  local key name value
  key=$(__cuttle_b64 "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')")
  while IFS=' ' read -r name value; do
    if [ "$name" = "$key" ]; then
      printf '%s' "$value" | base64 -d
      return 0
    fi
  done < "$__cuttle_variables"
  return 0
}

# set_octopusvariable NAME VALUE [-sensitive]: an output variable for later steps.
set_octopusvariable() {
  local sensitive=False
  if [ "${3:-}" = "-sensitive" ]; then sensitive=True; fi
  printf "##octopus[setVariable name='%s' value='%s' sensitive='%s']\n" \
    "$(__cuttle_b64 "$1")" "$(__cuttle_b64 "$2")" "$(__cuttle_b64 "$sensitive")"
}

# update_progress PERCENT [MESSAGE]: how far the step is, shown in the task log.
update_progress() {
  printf "##octopus[progress percentage='%s' message='%s']\n" \
    "$(__cuttle_b64 "$1")" "$(__cuttle_b64 "${2:-}")"
}

__cuttle_script="$1"
shift
. "./$__cuttle_script"
"###;

pub const PYTHON_BOOTSTRAP: &str = r###"# Cuttle's helpers for Python scripts; the script itself follows.
import base64 as _b64, os as _os, sys as _sys

def _cuttle_load(path):
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            values[_b64.b64decode(key).decode("utf-8")] = _b64.b64decode(value).decode("utf-8")
    return values

_cuttle_values = _cuttle_load(_os.path.join(_os.getcwd(), ".cuttle-variables"))

def get_octopusvariable(name):
    """The variable's value, or an empty string when it is undefined."""
    return _cuttle_values.get(name.lower(), "")

def set_octopusvariable(name, value, sensitive=False):
    """Creates an output variable that later steps read."""
    enc = lambda s: _b64.b64encode(str(s).encode("utf-8")).decode("ascii")
    print("##octopus[setVariable name='%s' value='%s' sensitive='%s']"
          % (enc(name), enc(value), enc("True" if sensitive else "False")), flush=True)

def update_progress(percentage, message=""):
    """Tells the task log how far the step is (0 to 100)."""
    enc = lambda s: _b64.b64encode(str(s).encode("utf-8")).decode("ascii")
    print("##octopus[progress percentage='%s' message='%s']"
          % (enc(percentage), enc(message)), flush=True)

octopusvariables = dict(_cuttle_values)

_script = _sys.argv[1]
_sys.argv = _sys.argv[1:]
with open(_script, encoding="utf-8") as _f:
    _code = compile(_f.read(), _script, "exec")
exec(_code, {
    "__name__": "__main__",
    "__file__": _script,
    "get_octopusvariable": get_octopusvariable,
    "set_octopusvariable": set_octopusvariable,
    "update_progress": update_progress,
    "octopusvariables": octopusvariables,
})
"###;

/// A message a script sent to the server by printing a `##octopus[…]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceMessage {
    SetVariable {
        name: String,
        value: String,
        sensitive: bool,
    },
    /// `update_progress`: how far the step is, 0 to 100.
    Progress {
        percentage: i64,
        message: Option<String>,
    },
}

/// Parses a service message line. Attribute values are base64 (Octopus's
/// form); a line that looks like one but does not parse is `Err` with why,
/// so the log can say so instead of silently dropping it.
pub fn parse_service_message(line: &str) -> Option<Result<ServiceMessage, String>> {
    let rest = line.trim_end().strip_prefix("##octopus[")?;
    let body = rest.strip_suffix(']')?;
    let (kind, mut attrs) = body.split_once(' ').unwrap_or((body, ""));
    let progress = kind.eq_ignore_ascii_case("progress");
    if !kind.eq_ignore_ascii_case("setVariable") && !progress {
        return Some(Err(format!("unknown service message '{kind}'")));
    }
    let mut fields: Vec<(String, String)> = vec![];
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            break;
        }
        let Some((key, after)) = attrs.split_once("='") else {
            return Some(Err("malformed attributes".into()));
        };
        let Some((encoded, after)) = after.split_once('\'') else {
            return Some(Err(format!("the attribute '{key}' is not terminated")));
        };
        let decoded = match B64
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            Some(d) => d,
            None => return Some(Err(format!("the attribute '{key}' is not valid base64"))),
        };
        fields.push((key.to_ascii_lowercase(), decoded));
        attrs = after;
    }
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    if progress {
        let percentage = get("percentage").unwrap_or_default();
        let Ok(percentage) = percentage.trim().parse::<i64>() else {
            return Some(Err(format!(
                "progress needs a whole percentage, not '{percentage}'"
            )));
        };
        return Some(Ok(ServiceMessage::Progress {
            percentage: percentage.clamp(0, 100),
            message: get("message").filter(|m| !m.is_empty()),
        }));
    }
    let Some(name) = get("name").filter(|n| !n.trim().is_empty()) else {
        return Some(Err("setVariable needs a name".into()));
    };
    Some(Ok(ServiceMessage::SetVariable {
        name,
        value: get("value").unwrap_or_default(),
        sensitive: get("sensitive").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_messages() {
        let line = format!(
            "##octopus[setVariable name='{}' value='{}' sensitive='{}']",
            B64.encode("Port"),
            B64.encode("80 80"),
            B64.encode("True")
        );
        assert_eq!(
            parse_service_message(&line),
            Some(Ok(ServiceMessage::SetVariable {
                name: "Port".into(),
                value: "80 80".into(),
                sensitive: true
            }))
        );
        assert_eq!(parse_service_message("hello"), None);
        assert!(matches!(
            parse_service_message("##octopus[setVariable name='%%%']"),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_service_message("##octopus[createArtifact path='eA==']"),
            Some(Err(_))
        ));
        let progress = format!(
            "##octopus[progress percentage='{}' message='{}']",
            B64.encode("150"),
            B64.encode("copying files")
        );
        assert_eq!(
            parse_service_message(&progress),
            Some(Ok(ServiceMessage::Progress {
                percentage: 100,
                message: Some("copying files".into())
            }))
        );
        let bad = format!("##octopus[progress percentage='{}']", B64.encode("half"));
        assert!(matches!(parse_service_message(&bad), Some(Err(m)) if m.contains("half")));
    }

    #[test]
    fn variables_files_read_back() {
        let mut d = VariableDictionary::new();
        d.set("Logging:Level", "Debug");
        d.set("Empty", "");
        let back = read_variables_file(&variables_file(&d));
        assert_eq!(back.get("logging:level"), Some("Debug"));
        assert_eq!(back.get("Empty"), Some(""));
    }

    #[test]
    fn variables_file_is_base64_lines() {
        let mut d = VariableDictionary::new();
        d.set("My.Var", "a b\n'c'");
        let text = variables_file(&d);
        let (k, v) = text.trim_end().split_once(' ').unwrap();
        assert_eq!(B64.decode(k).unwrap(), b"my.var");
        assert_eq!(B64.decode(v).unwrap(), b"a b\n'c'");
    }
}
