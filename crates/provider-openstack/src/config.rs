//! Where the credentials come from: `clouds.yaml` (+ `secure.yaml`) or the `OS_*` variables of an
//! openrc file, resolved the way the OpenStack client tools do.
//!
//! * A cloud is named by the caller, else by `OS_CLOUD`.
//! * `clouds.yaml` is the first that exists of `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
//!   `$XDG_CONFIG_HOME/openstack/clouds.yaml` (`~/.config/openstack/clouds.yaml`),
//!   `/etc/openstack/clouds.yaml`; `secure.yaml` (`$OS_CLIENT_SECURE_FILE` or the same folders) is
//!   merged over it, so passwords may live apart.
//! * With no cloud named, `OS_AUTH_URL` and friends (an openrc) are used.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use flotilla_model::SeamError;
use serde_yaml::Value;

/// A user or a project, by id or by name within a domain.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NamedRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub domain_name: Option<String>,
}

impl NamedRef {
    /// `name` (or `id`) for messages.
    pub fn label(&self) -> String {
        match (&self.name, &self.id) {
            (Some(n), _) => n.clone(),
            (None, Some(i)) => format!("id {i}"),
            (None, None) => "?".to_string(),
        }
    }
    fn is_set(&self) -> bool {
        self.id.is_some() || self.name.is_some()
    }
}

impl fmt::Debug for NamedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.label())?;
        if let Some(d) = self.domain_name.as_ref().or(self.domain_id.as_ref()) {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// How to get a token from Keystone v3.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// `password` (`v3password`): a user, a password, and the project to scope to.
    Password { user: NamedRef, password: String, project: NamedRef },
    /// `v3applicationcredential`: by id, or by name with its user; always project-scoped already.
    ApplicationCredential { id: Option<String>, name: Option<String>, user: NamedRef, secret: String },
}

/// Secrets never reach logs: `Debug` prints `***`.
impl fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMethod::Password { user, project, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .field("password", &"***")
                .field("project", project)
                .finish(),
            AuthMethod::ApplicationCredential { id, name, user, .. } => f
                .debug_struct("ApplicationCredential")
                .field("id", id)
                .field("name", name)
                .field("user", user)
                .field("secret", &"***")
                .finish(),
        }
    }
}

/// One cloud's connection settings, ready for [`crate::Cloud::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// The cloud's name in `clouds.yaml`, or `envvars` for `OS_*` variables.
    pub name: String,
    /// Where it was read from (a file path or `OS_* environment variables`), for messages.
    pub source: String,
    /// Keystone, e.g. `http://127.0.0.1:5000/v3` (a URL without `/v3` gets it appended).
    pub auth_url: String,
    pub auth: AuthMethod,
    /// Region to pick endpoints from; `None`: the first endpoint of the right interface.
    pub region: Option<String>,
    /// Endpoint interface: `public` (default), `internal` or `admin`.
    pub interface: String,
    /// TLS certificate verification (`verify: false` turns it off, with a warning).
    pub verify: bool,
    /// Extra CA bundle (PEM) to trust.
    pub cacert: Option<PathBuf>,
}

impl CloudConfig {
    /// Resolves a cloud the standard way: `cloud`, else `OS_CLOUD`, from the first `clouds.yaml`
    /// on the search path; with neither, the `OS_*` variables (openrc).
    pub fn load(cloud: Option<&str>) -> Result<CloudConfig, SeamError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        load_with(cloud, &env, &search_dirs(&env))
    }

    /// Reads cloud `cloud` from an explicit `clouds.yaml` (tests, `--os-config`); a `secure.yaml`
    /// beside it is merged.
    pub fn load_from(path: &Path, cloud: &str) -> Result<CloudConfig, SeamError> {
        let secure = path.with_file_name("secure.yaml");
        let secure = secure.is_file().then_some(secure);
        from_files(path, secure.as_deref(), cloud)
    }

    /// The `OS_*` variables given by `vars` (an openrc); `None` without `OS_AUTH_URL`.
    pub fn from_env_vars(vars: &dyn Fn(&str) -> Option<String>) -> Result<Option<CloudConfig>, SeamError> {
        let Some(auth_url) = vars("OS_AUTH_URL") else { return Ok(None) };
        let get = |k: &str| vars(k).filter(|v| !v.is_empty());
        let first = |ks: &[&str]| ks.iter().find_map(|k| get(k));
        let user = NamedRef {
            id: get("OS_USER_ID"),
            name: get("OS_USERNAME"),
            domain_id: first(&["OS_USER_DOMAIN_ID", "OS_DOMAIN_ID"]),
            domain_name: first(&["OS_USER_DOMAIN_NAME", "OS_DOMAIN_NAME"]),
        };
        let project = NamedRef {
            id: first(&["OS_PROJECT_ID", "OS_TENANT_ID"]),
            name: first(&["OS_PROJECT_NAME", "OS_TENANT_NAME"]),
            domain_id: first(&["OS_PROJECT_DOMAIN_ID", "OS_DOMAIN_ID"]),
            domain_name: first(&["OS_PROJECT_DOMAIN_NAME", "OS_DOMAIN_NAME"]),
        };
        let auth_type = get("OS_AUTH_TYPE").unwrap_or_else(|| "password".into());
        let src = "OS_* environment variables";
        let auth = auth_method(
            &auth_type,
            user,
            project,
            get("OS_PASSWORD"),
            get("OS_APPLICATION_CREDENTIAL_ID"),
            get("OS_APPLICATION_CREDENTIAL_NAME"),
            get("OS_APPLICATION_CREDENTIAL_SECRET"),
            src,
        )?;
        let insecure = get("OS_INSECURE").is_some_and(|v| truthy(&v));
        Ok(Some(CloudConfig {
            name: "envvars".into(),
            source: src.into(),
            auth_url,
            auth,
            region: get("OS_REGION_NAME"),
            interface: normalize_interface(&first(&["OS_INTERFACE", "OS_ENDPOINT_TYPE"]).unwrap_or_default()),
            verify: !insecure,
            cacert: get("OS_CACERT").map(PathBuf::from),
        }))
    }

    /// The user (or application credential) for messages.
    pub fn who(&self) -> String {
        match &self.auth {
            AuthMethod::Password { user, .. } => format!("user {}", user.label()),
            AuthMethod::ApplicationCredential { id, name, .. } => {
                format!("application credential {}", name.clone().or(id.clone()).unwrap_or_default())
            }
        }
    }

    /// Replaces the password (tests of a wrong password; a CLI prompt).
    pub fn with_password(mut self, new: &str) -> Self {
        if let AuthMethod::Password { password, .. } = &mut self.auth {
            *password = new.to_string();
        }
        self
    }

    /// The Keystone v3 base URL (with `/v3`, without a trailing slash).
    pub fn identity_v3(&self) -> String {
        let u = self.auth_url.trim_end_matches('/');
        if u.ends_with("/v3") {
            u.to_string()
        } else {
            format!("{u}/v3")
        }
    }
}

/// The folders searched for `clouds.yaml`/`secure.yaml`, in order.
fn search_dirs(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".")];
    if let Some(x) = env("XDG_CONFIG_HOME") {
        dirs.push(Path::new(&x).join("openstack"));
    }
    if let Some(h) = env("HOME") {
        let d = Path::new(&h).join(".config/openstack");
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    dirs
}

/// [`CloudConfig::load`] with the environment and search folders given (testable).
pub(crate) fn load_with(
    cloud: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    dirs: &[PathBuf],
) -> Result<CloudConfig, SeamError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(f) = env("OS_CLIENT_CONFIG_FILE") {
        candidates.push(PathBuf::from(f));
    }
    candidates.extend(dirs.iter().map(|d| d.join("clouds.yaml")));
    let clouds_file = candidates.iter().find(|p| p.is_file()).cloned();
    let mut secure_candidates: Vec<PathBuf> = Vec::new();
    if let Some(f) = env("OS_CLIENT_SECURE_FILE") {
        secure_candidates.push(PathBuf::from(f));
    }
    secure_candidates.extend(dirs.iter().map(|d| d.join("secure.yaml")));
    let secure_file = secure_candidates.iter().find(|p| p.is_file()).cloned();

    let named = cloud.map(str::to_string).or_else(|| env("OS_CLOUD"));
    let searched = || candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    match named {
        Some(name) => match clouds_file {
            Some(f) => from_files(&f, secure_file.as_deref(), &name),
            None => Err(SeamError::invalid(format!(
                "cloud {name:?} was asked for, but no clouds.yaml was found (searched {})",
                searched()
            ))),
        },
        None => match CloudConfig::from_env_vars(env)? {
            Some(c) => Ok(c),
            None => {
                let known = match &clouds_file {
                    Some(f) => match read_clouds(f, None) {
                        Ok(m) => {
                            format!("; {} defines: {}", f.display(), m.keys().cloned().collect::<Vec<_>>().join(", "))
                        }
                        Err(_) => String::new(),
                    },
                    None => format!("; no clouds.yaml found (searched {})", searched()),
                };
                Err(SeamError::invalid(format!(
                    "no OpenStack cloud selected: name one (OS_CLOUD or the cloud setting) or source an openrc (OS_AUTH_URL){known}"
                )))
            }
        },
    }
}

/// Reads the `clouds:` mapping of a file, with `secure.yaml` merged over it.
fn read_clouds(path: &Path, secure: Option<&Path>) -> Result<BTreeMap<String, Value>, SeamError> {
    let mut clouds = clouds_of(path)?;
    if let Some(s) = secure {
        for (name, v) in clouds_of(s)? {
            match clouds.get_mut(&name) {
                Some(base) => merge(base, v),
                None => {
                    clouds.insert(name, v);
                }
            }
        }
    }
    Ok(clouds)
}

fn clouds_of(path: &Path) -> Result<BTreeMap<String, Value>, SeamError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SeamError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| SeamError::invalid(format!("{} is not valid YAML: {e}", path.display())))?;
    let Some(clouds) = doc.get("clouds").and_then(Value::as_mapping) else {
        return Err(SeamError::invalid(format!("{} has no `clouds:` mapping", path.display())));
    };
    Ok(clouds.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone()))).collect())
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn from_files(path: &Path, secure: Option<&Path>, name: &str) -> Result<CloudConfig, SeamError> {
    let clouds = read_clouds(path, secure)?;
    let Some(c) = clouds.get(name) else {
        let known: Vec<&str> = clouds.keys().map(String::as_str).collect();
        return Err(SeamError::invalid(format!(
            "unknown cloud {name:?}: {} defines {}",
            path.display(),
            if known.is_empty() { "no clouds".to_string() } else { format!("only {}", known.join(", ")) }
        )));
    };
    let src = format!("{} (cloud {name})", path.display());
    let s = |v: &Value, k: &str| -> Option<String> {
        match v.get(k)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let empty = Value::Null;
    let auth = c.get("auth").unwrap_or(&empty);
    let auth_url = s(auth, "auth_url").ok_or_else(|| SeamError::invalid(format!("{src}: auth.auth_url is missing")))?;
    let first = |ks: &[&str]| ks.iter().find_map(|k| s(auth, k));
    let user = NamedRef {
        id: s(auth, "user_id"),
        name: s(auth, "username"),
        domain_id: first(&["user_domain_id", "domain_id"]),
        domain_name: first(&["user_domain_name", "domain_name"]),
    };
    let project = NamedRef {
        id: first(&["project_id", "tenant_id"]),
        name: first(&["project_name", "tenant_name"]),
        domain_id: first(&["project_domain_id", "domain_id"]),
        domain_name: first(&["project_domain_name", "domain_name"]),
    };
    let auth_type = s(c, "auth_type").unwrap_or_else(|| "password".into());
    let method = auth_method(
        &auth_type,
        user,
        project,
        s(auth, "password"),
        s(auth, "application_credential_id"),
        s(auth, "application_credential_name"),
        s(auth, "application_credential_secret"),
        &src,
    )?;
    let region = s(c, "region_name").or_else(|| {
        c.get("regions").and_then(Value::as_sequence).and_then(|r| r.first()).and_then(|r| match r {
            Value::String(s) => Some(s.clone()),
            other => other.get("name").and_then(Value::as_str).map(str::to_string),
        })
    });
    // As openstacksdk (and requests) read it: a boolean, or the path of a CA bundle to verify
    // against. Anything else is an error, never a silent "off".
    let mut cacert = s(c, "cacert").map(PathBuf::from);
    let verify = match c.get("verify") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(v)) => match boolean(v) {
            Some(b) => b,
            None if v.contains('/') => {
                cacert.get_or_insert_with(|| PathBuf::from(v));
                true
            }
            None => {
                return Err(SeamError::invalid(format!(
                    "{src}: verify must be true, false or the path of a CA bundle, not {v:?}"
                )))
            }
        },
        Some(other) => {
            return Err(SeamError::invalid(format!(
                "{src}: verify must be true, false or the path of a CA bundle, not {other:?}"
            )));
        }
    };
    if let Some(v) = s(c, "identity_api_version") {
        if !v.starts_with('3') {
            return Err(SeamError::invalid(format!(
                "{src}: identity_api_version {v} is not supported (Keystone v3 only)"
            )));
        }
    }
    Ok(CloudConfig {
        name: name.to_string(),
        source: path.display().to_string(),
        auth_url,
        auth: method,
        region,
        interface: normalize_interface(&s(c, "interface").or_else(|| s(c, "endpoint_type")).unwrap_or_default()),
        verify,
        cacert,
    })
}

#[allow(clippy::too_many_arguments)]
fn auth_method(
    auth_type: &str,
    user: NamedRef,
    project: NamedRef,
    password: Option<String>,
    ac_id: Option<String>,
    ac_name: Option<String>,
    ac_secret: Option<String>,
    src: &str,
) -> Result<AuthMethod, SeamError> {
    match auth_type {
        "password" | "v3password" => {
            if !user.is_set() {
                return Err(SeamError::invalid(format!("{src}: no username or user_id")));
            }
            let password = password.ok_or_else(|| SeamError::invalid(format!("{src}: no password")))?;
            if !project.is_set() {
                return Err(SeamError::invalid(format!(
                    "{src}: no project_name or project_id (Flotilla needs a project-scoped token)"
                )));
            }
            Ok(AuthMethod::Password { user, password, project })
        }
        "v3applicationcredential" | "application_credential" | "applicationcredential" => {
            let secret =
                ac_secret.ok_or_else(|| SeamError::invalid(format!("{src}: no application_credential_secret")))?;
            if ac_id.is_none() && (ac_name.is_none() || !user.is_set()) {
                return Err(SeamError::invalid(format!(
                    "{src}: an application credential needs application_credential_id, or its name and the user"
                )));
            }
            Ok(AuthMethod::ApplicationCredential { id: ac_id, name: ac_name, user, secret })
        }
        other => Err(SeamError::invalid(format!(
            "{src}: auth_type {other:?} is not supported (password or v3applicationcredential)"
        ))),
    }
}

fn truthy(v: &str) -> bool {
    boolean(v) == Some(true)
}

/// A boolean as YAML files and environment variables write it; None for anything else.
fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `publicURL` → `public`; empty → `public`.
fn normalize_interface(i: &str) -> String {
    let i = i.trim().trim_end_matches("URL").to_ascii_lowercase();
    if i.is_empty() {
        "public".into()
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const YAML: &str = r#"
clouds:
  lab:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: admin
      password: s3cret
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000
      application_credential_id: abc
    verify: false
    cacert: /tmp/ca.pem
"#;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn verify_is_a_boolean_or_a_ca_path_and_nothing_else_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let cloud = |verify: &str| {
            let p = dir.path().join("clouds.yaml");
            std::fs::write(
                &p,
                format!("clouds:\n  c:\n    auth: {{auth_url: https://k.example/v3, username: u, password: p, project_name: p}}\n    verify: {verify}\n"),
            )
            .unwrap();
            CloudConfig::load_from(&p, "c")
        };
        assert!(!cloud("false").unwrap().verify);
        assert!(!cloud("\"no\"").unwrap().verify);
        assert!(cloud("\"True\"").unwrap().verify);
        let ca = cloud("/etc/ssl/my-ca.pem").unwrap();
        assert!(ca.verify, "a CA path verifies");
        assert_eq!(ca.cacert.as_deref(), Some(Path::new("/etc/ssl/my-ca.pem")));
        for bad in ["\"maybe\"", "\"insecure\"", "[1]"] {
            let e = cloud(bad).unwrap_err();
            assert!(e.message.contains("verify must be true, false or the path of a CA bundle"), "{bad}: {e}");
        }
    }

    #[test]
    fn reads_clouds_and_secure_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clouds.yaml"), YAML).unwrap();
        std::fs::write(
            dir.path().join("secure.yaml"),
            "clouds:\n  appcred:\n    auth:\n      application_credential_secret: shh\n",
        )
        .unwrap();
        let c = CloudConfig::load_from(&dir.path().join("clouds.yaml"), "lab").unwrap();
        assert_eq!(c.identity_v3(), "http://127.0.0.1:5000/v3");
        assert_eq!(c.region.as_deref(), Some("RegionOne"));
        assert!(c.verify);
        assert!(!format!("{c:?}").contains("s3cret"), "Debug must not print the password");
        let a = CloudConfig::load_from(&dir.path().join("clouds.yaml"), "appcred").unwrap();
        assert!(matches!(&a.auth, AuthMethod::ApplicationCredential { secret, .. } if secret == "shh"));
        assert!(!a.verify);
        assert_eq!(a.identity_v3(), "https://keystone.example:5000/v3");
        assert_eq!(a.cacert.as_deref(), Some(Path::new("/tmp/ca.pem")));
        let e = CloudConfig::load_from(&dir.path().join("clouds.yaml"), "nope").unwrap_err();
        assert!(e.message.contains("unknown cloud \"nope\"") && e.message.contains("appcred, lab"), "{e}");
    }

    #[test]
    fn search_path_env_and_openrc() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("elsewhere.yaml");
        std::fs::write(&f, YAML).unwrap();
        let p = f.to_str().unwrap();
        // OS_CLIENT_CONFIG_FILE + OS_CLOUD.
        let c = load_with(None, &env_of(&[("OS_CLIENT_CONFIG_FILE", p), ("OS_CLOUD", "lab")]), &[]).unwrap();
        assert_eq!(c.name, "lab");
        // The explicit name beats OS_CLOUD.
        let e = load_with(Some("x"), &env_of(&[("OS_CLIENT_CONFIG_FILE", p), ("OS_CLOUD", "lab")]), &[]).unwrap_err();
        assert!(e.message.contains("unknown cloud \"x\""));
        // A search folder.
        let c = load_with(Some("lab"), &env_of(&[]), &[PathBuf::from("/nonexistent"), dir.path().to_path_buf()]);
        assert!(c.unwrap_err().message.contains("no clouds.yaml"));
        std::fs::rename(&f, dir.path().join("clouds.yaml")).unwrap();
        let c = load_with(Some("lab"), &env_of(&[]), &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(c.name, "lab");
        // Nothing named: openrc variables.
        let rc = [
            ("OS_AUTH_URL", "http://k:5000/v3/"),
            ("OS_USERNAME", "demo"),
            ("OS_PASSWORD", "pw"),
            ("OS_PROJECT_NAME", "demo"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_ID", "default"),
            ("OS_REGION_NAME", "R1"),
            ("OS_INTERFACE", "internalURL"),
            ("OS_INSECURE", "true"),
        ];
        let c = load_with(None, &env_of(&rc), &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(c.name, "envvars");
        assert_eq!(c.identity_v3(), "http://k:5000/v3");
        assert_eq!(c.interface, "internal");
        assert!(!c.verify);
        // Nothing at all: the known clouds are listed.
        let e = load_with(None, &env_of(&[]), &[dir.path().to_path_buf()]).unwrap_err();
        assert!(e.message.contains("appcred, lab"), "{e}");
        // A missing password is named.
        let e = load_with(None, &env_of(&rc[..1]), &[]).unwrap_err();
        assert!(e.message.contains("no username"), "{e}");
    }
}
