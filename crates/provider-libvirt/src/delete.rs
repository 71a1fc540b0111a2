//! Deleting members: shut down (or destroy after the timeout), undefine, remove their files.

use std::path::Path;
use std::sync::Arc;

use flotilla_model::{GroupId, InstanceId, SeamError};

use flotilla_model::ErrorKind;

use crate::host::{is_no_domain, Found, Host, Listing};
use crate::provider::*;
use crate::validate_name;
use crate::xml::MemberMeta;

impl Inner {
    /// Destroys and undefines a domain by UUID, best effort (for rollbacks).
    pub(crate) async fn remove_domain(&self, host: &Host, name: &str, uuid: &str) {
        let u = uuid.to_string();
        let r = host
            .call(&format!("remove {name}"), move |c| {
                let d = match c.lookup_domain_by_uuid_string(&u) {
                    Ok(d) => d,
                    Err(e) if is_no_domain(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                if d.is_active()? {
                    d.destroy()?;
                }
                d.undefine()
            })
            .await;
        if let Err(e) = r {
            tracing::error!(member = name, error = %e, "could not remove a member's domain during a rollback");
        }
    }

    pub(crate) async fn delete(self: &Arc<Self>, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        let seen = Arc::new(self.survey(false).await);
        let records = Arc::new(self.read_records());
        // members shut down at the same time: a batch takes about as long as one
        let mut jobs = tokio::task::JoinSet::new();
        let mut unique: Vec<&str> = Vec::new();
        for id in ids {
            let name = id.as_str();
            if validate_name(name).is_err() || unique.contains(&name) {
                continue; // no domain of ours can have this name
            }
            unique.push(name);
            let (me, group, name, seen, records) =
                (self.clone(), group.clone(), name.to_string(), seen.clone(), records.clone());
            let i = unique.len();
            jobs.spawn(async move {
                let r = me.delete_one(&group, &name, &seen, &records).await;
                (i, r.map_err(|e| e.context(format!("delete {name}"))))
            });
        }
        let mut errors = Vec::new();
        while let Some(j) = jobs.join_next().await {
            match j {
                Ok((_, Ok(()))) => {}
                Ok((i, Err(e))) => errors.push((i, e)),
                Err(e) => errors.push((usize::MAX, SeamError::bug(format!("delete task failed: {e}")))),
            }
        }
        errors.sort_by_key(|(i, _)| *i);
        SeamError::combine(errors.into_iter().map(|(_, e)| e).collect())
    }

    pub(crate) async fn delete_one(
        self: &Arc<Self>,
        group: &GroupId,
        name: &str,
        seen: &[(Arc<Host>, Result<Listing, SeamError>)],
        records: &[MemberMeta],
    ) -> Result<(), SeamError> {
        for (h, r) in seen {
            let Ok(l) = r else { continue };
            if let Some(f) = l.ours.iter().find(|f| f.meta.instance == name) {
                if f.meta.group != group.as_str() {
                    return Err(SeamError::new(
                        ErrorKind::Conflict,
                        format!("member {name} belongs to group `{}`, not `{group}`", f.meta.group),
                    ));
                }
                return self.stop_and_remove(h, f).await;
            }
        }
        self.refuse_unsure(name, seen, records)?;
        // gone already; remove files a previous delete may have left
        let dir = self.member_dir(name);
        remove_dir(&dir).await.map_err(|e| SeamError::transient(format!("cannot remove {}: {e}", dir.display())))
    }

    /// ACPI shutdown (up to `shutdown_timeout`) → destroy → undefine → files. Works on the UUID
    /// listed, so a domain that replaced it under the same name is never touched.
    pub(crate) async fn stop_and_remove(&self, h: &Arc<Host>, f: &Found) -> Result<(), SeamError> {
        let name = f.meta.instance.clone();
        let t0 = tokio::time::Instant::now();
        let u = f.uuid.clone();
        let active = h
            .call(&format!("shut down {name}"), move |c| {
                let d = match c.lookup_domain_by_uuid_string(&u) {
                    Ok(d) => d,
                    Err(e) if is_no_domain(&e) => return Ok(None),
                    Err(e) => return Err(e),
                };
                if !d.is_active()? {
                    return Ok(Some(false));
                }
                match d.shutdown() {
                    Ok(()) => Ok(Some(true)),
                    // raced with the guest powering off
                    Err(e) if e.code().is(virt::error::ErrorNumber::OperationInvalid) => Ok(Some(d.is_active()?)),
                    Err(e) => Err(e),
                }
            })
            .await?;
        let mut how = "was not running";
        if active == Some(true) {
            how = "shut down";
            let deadline = t0 + self.settings.shutdown_timeout;
            loop {
                let u = f.uuid.clone();
                let still = h
                    .call(&format!("state of {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                        Ok(d) => d.is_active(),
                        Err(e) if is_no_domain(&e) => Ok(false),
                        Err(e) => Err(e),
                    })
                    .await?;
                if !still {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    how = "destroyed after the shutdown timeout";
                    let u = f.uuid.clone();
                    h.call(&format!("destroy {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                        Ok(d) => match d.destroy() {
                            Err(e) if e.code().is(virt::error::ErrorNumber::OperationInvalid) => Ok(()),
                            r => r,
                        },
                        Err(e) if is_no_domain(&e) => Ok(()),
                        Err(e) => Err(e),
                    })
                    .await?;
                    break;
                }
                tokio::time::sleep(SHUTDOWN_POLL).await;
            }
        }
        if active.is_some() {
            let u = f.uuid.clone();
            h.call(&format!("undefine {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                Ok(d) => d.undefine(),
                Err(e) if is_no_domain(&e) => Ok(()),
                Err(e) => Err(e),
            })
            .await?;
            // libvirt may keep the domain object a moment while it finishes stopping QEMU: the
            // delete is done when the domain is gone (an undefined but still active domain goes
            // when it stops; a persistent one that is still there is undefined again)
            let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
            loop {
                let u = f.uuid.clone();
                let gone = h
                    .call(&format!("confirm removal of {name}"), move |c| match c.lookup_domain_by_uuid_string(&u) {
                        Ok(d) => {
                            if !d.is_active()? && d.is_persistent()? {
                                d.undefine()?;
                            }
                            Ok(false)
                        }
                        Err(e) if is_no_domain(&e) => Ok(true),
                        Err(e) => Err(e),
                    })
                    .await?;
                if gone {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(SeamError::transient(format!(
                        "member {name} on {} was undefined but libvirt still lists it after {}s; delete again",
                        h.label(),
                        REMOVAL_WAIT.as_secs()
                    )));
                }
                tokio::time::sleep(SHUTDOWN_POLL).await;
            }
        }
        h.forget(&name);
        let mut dirs = vec![self.member_dir(&name)];
        // a member made under another state directory: its own directory, if it looks like one
        if f.meta.dir != dirs[0]
            && f.meta.dir.file_name().is_some_and(|n| n == name.as_str())
            && f.meta.dir.parent().and_then(Path::file_name).is_some_and(|n| n == "libvirt")
        {
            dirs.push(f.meta.dir.clone());
        }
        for d in dirs {
            remove_dir(&d).await.map_err(|e| {
                SeamError::transient(format!("member {name} undefined but {} remains: {e}", d.display()))
            })?;
        }
        tracing::info!(member = %name, host = %h.name, how, seconds = t0.elapsed().as_secs_f64(), "member deleted");
        Ok(())
    }
}

pub(crate) async fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
