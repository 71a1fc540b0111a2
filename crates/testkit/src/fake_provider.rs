//! An in-memory provider: members appear Running at once; failures can be injected.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use flotilla_model::{
    Clock, ErrorKind, GroupId, Instance, InstanceId, InstanceSpec, InstanceState, Provider, SeamError,
};

#[derive(Default)]
struct Inner {
    members: BTreeMap<InstanceId, Instance>,
    creates: u32,
    deletes: u32,
    fail_next: VecDeque<(&'static str, Option<ErrorKind>)>,
}

/// A provider that keeps members in memory. `create` is idempotent by name, like the real ones.
pub struct FakeProvider {
    clock: Box<dyn Clock>,
    inner: Mutex<Inner>,
}

impl FakeProvider {
    pub fn new(clock: impl Clock + 'static) -> Self {
        FakeProvider { clock: Box::new(clock), inner: Mutex::new(Inner::default()) }
    }

    /// Makes the next call of `op` ("create", "delete", "list") fail with `kind`.
    pub fn fail_next(&self, op: &'static str, kind: ErrorKind) {
        self.inner.lock().unwrap().fail_next.push_back((op, Some(kind)));
    }

    /// Makes the next call of `op` panic (a bug in a provider).
    pub fn panic_next(&self, op: &'static str) {
        self.inner.lock().unwrap().fail_next.push_back((op, None));
    }

    /// Sets a member's state as the cloud would report it (e.g. Failed).
    pub fn set_state(&self, id: &str, state: InstanceState) {
        if let Some(m) = self.inner.lock().unwrap().members.get_mut(&InstanceId::new(id)) {
            m.state = state;
        }
    }

    /// Member names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.lock().unwrap().members.values().map(|m| m.name.clone()).collect()
    }

    /// (members actually created, members actually deleted) since the start.
    pub fn counts(&self) -> (u32, u32) {
        let i = self.inner.lock().unwrap();
        (i.creates, i.deletes)
    }

    fn injected(&self, op: &str) -> Result<(), SeamError> {
        let mut i = self.inner.lock().unwrap();
        if i.fail_next.front().is_some_and(|(o, _)| *o == op) {
            let (_, kind) = i.fail_next.pop_front().unwrap();
            drop(i);
            let Some(kind) = kind else { panic!("injected {op} panic") };
            return Err(SeamError::new(kind, format!("injected {op} failure")));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }

    async fn list(&self, group: Option<&GroupId>) -> Result<Vec<Instance>, SeamError> {
        self.injected("list")?;
        let i = self.inner.lock().unwrap();
        Ok(i.members.values().filter(|m| group.is_none_or(|g| &m.group == g)).cloned().collect())
    }

    async fn create(&self, group: &GroupId, spec: &InstanceSpec, names: &[String]) -> Result<Vec<Instance>, SeamError> {
        self.injected("create")?;
        let now = self.clock.now();
        let mut i = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for name in names {
            let id = InstanceId::new(name.clone());
            if let Some(existing) = i.members.get(&id) {
                if &existing.group != group {
                    return Err(SeamError::new(ErrorKind::Conflict, format!("{name} belongs to {}", existing.group)));
                }
                out.push(existing.clone());
                continue;
            }
            let mut inst = Instance::new(name.clone(), group, now);
            inst.state = InstanceState::Running;
            inst.address = Some(format!("fake://{name}"));
            inst.tags.insert("vcpus".into(), spec.vcpus.to_string());
            i.members.insert(id, inst.clone());
            i.creates += 1;
            out.push(inst);
        }
        Ok(out)
    }

    async fn delete(&self, _group: &GroupId, ids: &[InstanceId]) -> Result<(), SeamError> {
        self.injected("delete")?;
        let mut i = self.inner.lock().unwrap();
        for id in ids {
            if i.members.remove(id).is_some() {
                i.deletes += 1;
            }
        }
        Ok(())
    }
}
