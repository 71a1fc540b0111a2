//! The seed's load generator (`split_after_scale.sh`): CPU load inside members, 100% on the
//! baseline until a clone runs, then split. Local members get it through the bundled workload's
//! `/load` endpoint (a busy loop at a duty cycle); guests (libvirt, Nova) get the seed's own
//! `yes > /dev/null`, one per vCPU, over SSH, their pids kept in the guest so `--stop` ends
//! exactly those.

use std::time::Duration;

use anyhow::{bail, Context};
use flotilla_model::{GroupId, Instance, InstanceId, Store};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Method;
use hyper_util::rt::TokioIo;

/// One HTTP/1.1 request to a member; returns the status and body.
pub async fn request(addr: &str, method: Method, path: &str) -> anyhow::Result<(u16, String)> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .with_context(|| format!("connect to {addr}: timed out"))?
        .with_context(|| format!("connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(70), sender.send_request(req))
        .await
        .with_context(|| format!("{addr}{path}: timed out"))??;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = conn.await;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// How load reaches a member.
pub enum Loader {
    /// The bundled workload's `/load?duty=D` (local members).
    Http,
    /// `yes > /dev/null` per vCPU inside the guest, over the SSH sampler's session (key auth, host
    /// key pinned). A guest has no duty cycle: any duty above zero is 100% of every vCPU.
    Ssh(flotilla_metrics_ssh::SshSampler),
}

/// Where the guest keeps the pids of the load it runs.
const GUEST_PIDS: &str = "/tmp/flotilla-load.pids";

impl Loader {
    /// Starts load at `duty` (0..=1) on the member's vCPUs (replacing what ran before).
    pub async fn set_duty(&self, member: &Instance, duty: f64) -> anyhow::Result<()> {
        match self {
            Loader::Http => set_duty(member, duty).await,
            Loader::Ssh(ssh) => {
                self.stop(member).await?;
                if duty > 0.0 {
                    let start = format!(
                        "n=$(grep -c ^processor /proc/cpuinfo); i=0; while [ $i -lt $n ]; do \
                         setsid yes >/dev/null 2>&1 </dev/null & echo $! >> {GUEST_PIDS}; i=$((i+1)); done"
                    );
                    guest(ssh, member, &start).await?;
                }
                Ok(())
            }
        }
    }

    /// Ends the load on the member.
    pub async fn stop(&self, member: &Instance) -> anyhow::Result<()> {
        match self {
            Loader::Http => stop(member).await,
            Loader::Ssh(ssh) => {
                let stop = format!(
                    "if [ -f {GUEST_PIDS} ]; then kill $(cat {GUEST_PIDS}) 2>/dev/null; rm -f {GUEST_PIDS}; fi; true"
                );
                guest(ssh, member, &stop).await
            }
        }
    }
}

/// Runs a shell command in the member's guest; a non-zero exit is an error naming the member.
async fn guest(ssh: &flotilla_metrics_ssh::SshSampler, member: &Instance, command: &str) -> anyhow::Result<()> {
    let out = ssh.run_command(&member.group, member, command).await.with_context(|| format!("{}: ssh", member.name))?;
    if out.exit_status != Some(0) {
        bail!(
            "{}: `{command}` exited {:?}: {}",
            member.name,
            out.exit_status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts a busy loop at `duty` (0..=1) on the member's vCPUs.
pub async fn set_duty(member: &Instance, duty: f64) -> anyhow::Result<()> {
    let addr = member.address.as_deref().with_context(|| format!("{} has no address yet", member.name))?;
    let (status, body) = request(addr, Method::POST, &format!("/load?duty={duty}")).await?;
    if status != 200 {
        bail!("{}: POST /load answered {status}: {}", member.name, body.trim());
    }
    Ok(())
}

/// Stops the member's busy loop.
pub async fn stop(member: &Instance) -> anyhow::Result<()> {
    let addr = member.address.as_deref().with_context(|| format!("{} has no address yet", member.name))?;
    let (status, body) = request(addr, Method::DELETE, "/load").await?;
    if status != 200 {
        bail!("{}: DELETE /load answered {status}: {}", member.name, body.trim());
    }
    Ok(())
}

/// The group's running members as the store knows them, primary first.
pub async fn running_members(
    store: &dyn Store,
    group: &GroupId,
) -> anyhow::Result<(Option<InstanceId>, Vec<Instance>)> {
    let stored = store.primary(group).await?;
    let mut members: Vec<Instance> = store.instances(group).await?.into_iter().filter(|i| i.is_running()).collect();
    let primary = Instance::primary(stored.as_ref(), &members).map(|m| m.id.clone());
    members.sort_by(|a, b| {
        let not_primary = |m: &Instance| Some(&m.id) != primary.as_ref();
        not_primary(a).cmp(&not_primary(b)).then_with(|| Instance::by_age(a, b))
    });
    Ok((primary, members))
}

/// The seed's pattern: 100% on the baseline until a clone is running, then `split` on baseline and
/// clone(s). Returns the members the load was split across.
pub async fn split_after_scale(
    loader: &Loader,
    store: &dyn Store,
    group: &GroupId,
    wait: Duration,
    split: f64,
    say: &(dyn Fn(String) + Sync),
) -> anyhow::Result<Vec<Instance>> {
    let (_, members) = running_members(store, group).await?;
    let Some(baseline) = members.first().cloned() else {
        bail!("group {group} has no running member to load");
    };
    if members.len() == 1 {
        loader.set_duty(&baseline, 1.0).await?;
        say(format!("spike: 100% CPU on {} until a clone is running", baseline.name));
        let step = Duration::from_millis(250);
        let mut waited = Duration::ZERO;
        loop {
            let (_, now) = running_members(store, group).await?;
            if now.len() > 1 && now.iter().skip(1).all(|m| m.address.is_some()) {
                break;
            }
            if waited >= wait {
                bail!(
                    "no clone appeared within {wait:?}; is a controller (`flotilla run` or `flotilla watch`) running? \
                     (the spike keeps going: `flotilla load --stop` ends it)"
                );
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
    }
    let (_, members) = running_members(store, group).await?;
    for m in &members {
        loader.set_duty(m, split).await?;
    }
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    say(format!("split: {:.0}% CPU on each of {}", split * 100.0, names.join(", ")));
    Ok(members)
}

/// Ends the load on every running member of the group.
pub async fn stop_all(loader: &Loader, store: &dyn Store, group: &GroupId) -> anyhow::Result<Vec<String>> {
    let (_, members) = running_members(store, group).await?;
    let mut stopped = Vec::new();
    for m in &members {
        loader.stop(m).await?;
        stopped.push(m.name.clone());
    }
    Ok(stopped)
}
