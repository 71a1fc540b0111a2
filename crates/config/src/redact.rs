//! The configuration as the file says it, for the API's `/config`: as JSON, with every value whose
//! key names a secret replaced. Flotilla's own secrets never sit in the file (tokens come from a
//! file or the environment), but a user may put one in a cloud-init `user_data`, a provider's
//! password or a webhook's signing secret.

use serde_json::Value;

/// What stands in for a redacted value.
pub const REDACTED: &str = "<redacted>";

/// Keys whose values are redacted: a key containing one of these (case-insensitive), unless it
/// only names where a secret lives (`tokens_file`, `tokens_env`, `password_file`, ...).
const SECRET_WORDS: [&str; 8] =
    ["password", "secret", "token", "user_data", "userdata", "credential", "private", "auth"];
const WHERE_NOT_WHAT: [&str; 4] = ["_file", "_env", "_path", "_url"];

pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| k.contains(w)) && !WHERE_NOT_WHAT.iter().any(|w| k.ends_with(w))
}

/// The YAML source as JSON with secrets redacted; a document JSON cannot hold (a non-string key)
/// is reported as such rather than half shown.
pub fn redacted(src: &str) -> Value {
    let yaml: serde_yaml::Value = match serde_yaml::from_str(src) {
        Ok(v) => v,
        Err(e) => return Value::String(format!("<unreadable: {e}>")),
    };
    match serde_json::to_value(&yaml) {
        Ok(mut v) => {
            redact(&mut v);
            v
        }
        Err(e) => Value::String(format!("<not representable as JSON: {e}>")),
    }
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_key(k) && !val.is_null() {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_their_locations_kept() {
        let v = redacted(
            "api: { tokens_file: /etc/t, token: abc }\n\
             groups:\n  - name: web\n    template: { user_data: \"#cloud-config\\npassword: x\", image: deb }\n\
             provider: { kind: openstack, Password: hunter2, auth_url: https://k:5000/v3 }\n",
        );
        assert_eq!(v["api"]["tokens_file"], "/etc/t");
        assert_eq!(v["api"]["token"], REDACTED);
        assert_eq!(v["groups"][0]["template"]["user_data"], REDACTED);
        assert_eq!(v["groups"][0]["template"]["image"], "deb");
        assert_eq!(v["provider"]["Password"], REDACTED);
        assert_eq!(v["provider"]["auth_url"], "https://k:5000/v3");
        assert!(!v.to_string().contains("hunter2") && !v.to_string().contains("abc"));
    }

    #[test]
    fn what_json_cannot_hold_is_said_not_half_shown() {
        assert!(redacted("? [1, 2]\n: x\n").as_str().unwrap().starts_with("<not representable"));
        assert!(redacted("a: [").as_str().unwrap().starts_with("<unreadable"));
    }
}
