//! Fault injection for reliability tests: `FLOTILLA_FAULTS=rate=0.2[,seed=N]` wraps the configured
//! provider so that that share of its calls (`list`, `create`, `delete`) go wrong, each in one of
//! four ways: an error before the call; a call that hangs, then times out; a slow call that
//! succeeds; or, the worst, a call that took effect but whose answer is lost (the create happened,
//! the caller hears an error). Off unless the variable is set; a malformed value is refused at start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{GroupId, Instance, InstanceId, InstanceSpec, Provider, SeamError};

pub const ENV: &str = "FLOTILLA_FAULTS";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    pub rate: f64,
    pub seed: u64,
}

impl FaultSpec {
    pub fn parse(s: &str) -> Result<FaultSpec, String> {
        let mut spec = FaultSpec { rate: 0.0, seed: 1 };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("{ENV}: `{part}` is not key=value"))?;
            match k {
                "rate" => {
                    spec.rate = v.parse().map_err(|_| format!("{ENV}: rate `{v}` is not a number"))?;
                    if !(0.0..=1.0).contains(&spec.rate) {
                        return Err(format!("{ENV}: rate must be between 0 and 1, got {v}"));
                    }
                }
                "seed" => spec.seed = v.parse().map_err(|_| format!("{ENV}: seed `{v}` is not a number"))?,
                other => return Err(format!("{ENV}: unknown key `{other}` (rate, seed)")),
            }
        }
        Ok(spec)
    }
}

/// The provider wrapped with faults if the environment asks for them.
pub fn wrap(provider: Arc<dyn Provider>) -> anyhow::Result<Arc<dyn Provider>> {
    let Some(v) = std::env::var(ENV).ok().filter(|s| !s.is_empty()) else { return Ok(provider) };
    let spec = FaultSpec::parse(&v).map_err(anyhow::Error::msg)?;
    tracing::warn!(rate = spec.rate, seed = spec.seed, "fault injection armed: provider calls will fail on purpose");
    Ok(Arc::new(Faulty { inner: provider, spec, rng: Mutex::new(spec.seed | 1) }))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    ErrorBefore,
    Timeout,
    Slow,
    Lost,
}

struct Faulty {
    inner: Arc<dyn Provider>,
    spec: FaultSpec,
    rng: Mutex<u64>,
}

impl Faulty {
    fn next(&self) -> u64 {
        let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn roll(&self) -> Option<Fault> {
        let p = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        (p < self.spec.rate).then(|| match self.next() % 4 {
            0 => Fault::ErrorBefore,
            1 => Fault::Timeout,
            2 => Fault::Slow,
            _ => Fault::Lost,
        })
    }

    /// Runs `call` through a fault, if one is rolled.
    async fn run<T>(
        &self,
        op: &str,
        call: impl std::future::Future<Output = Result<T, SeamError>>,
    ) -> Result<T, SeamError> {
        let fault = self.roll();
        if let Some(f) = fault {
            tracing::info!(op, fault = ?f, "injected provider fault");
        }
        match fault {
            None => call.await,
            Some(Fault::ErrorBefore) => Err(SeamError::transient(format!("injected fault: {op} failed"))),
            Some(Fault::Timeout) => {
                tokio::time::sleep(Duration::from_millis(500 + self.next() % 1000)).await;
                Err(SeamError::transient(format!("injected fault: {op} timed out")))
            }
            Some(Fault::Slow) => {
                tokio::time::sleep(Duration::from_millis(self.next() % 1000)).await;
                call.await
            }
            Some(Fault::Lost) => {
                let _ = call.await;
                Err(SeamError::transient(format!("injected fault: the answer to {op} was lost")))
            }
        }
    }
}

#[async_trait]
impl Provider for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn list(&self, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
        self.run("list", self.inner.list(group)).await
    }
    async fn create(&self, group: &GroupId, spec: &InstanceSpec, names: &[String]) -> Result<Vec<Instance>, SeamError> {
        self.run("create", self.inner.create(group, spec, names)).await
    }
    async fn delete(&self, group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        self.run("delete", self.inner.delete(group, ids)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        assert_eq!(FaultSpec::parse("rate=0.2,seed=7"), Ok(FaultSpec { rate: 0.2, seed: 7 }));
        assert!(FaultSpec::parse("rate=2").unwrap_err().contains("between 0 and 1"));
        assert!(FaultSpec::parse("rate=x").unwrap_err().contains("rate `x`"));
        assert!(FaultSpec::parse("chaos=1").unwrap_err().contains("unknown key `chaos`"));
    }

    #[test]
    fn about_the_asked_share_of_calls_fail() {
        let f = Faulty {
            inner: Arc::new(flotilla_testkit_free::Nothing),
            spec: FaultSpec { rate: 0.2, seed: 3 },
            rng: Mutex::new(3),
        };
        let n = 10_000;
        let hits = (0..n).filter(|_| f.roll().is_some()).count();
        assert!((1_700..2_300).contains(&hits), "{hits} of {n}");
    }

    mod flotilla_testkit_free {
        use super::*;
        pub struct Nothing;
        #[async_trait]
        impl Provider for Nothing {
            fn name(&self) -> &str {
                "nothing"
            }
            async fn list(&self, _: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
                Ok(Vec::new())
            }
            async fn create(&self, _: &GroupId, _: &InstanceSpec, _: &[String]) -> Result<Vec<Instance>, SeamError> {
                Ok(Vec::new())
            }
            async fn delete(&self, _: &GroupId, _: &[InstanceId]) -> Result<(), SeamError> {
                Ok(())
            }
        }
    }
}
