use std::sync::{Arc, RwLock};

use crate::error::CoreError;
use crate::provider::Provider;

#[derive(Clone)]
enum Slot {
    Loading,
    Ready(Arc<dyn Provider>),
    Failed(String),
    /// Configured, but unloaded by an operator until loaded again.
    Unloaded,
}

/// The models the service offers, by client-facing name, in the order they
/// were declared. A model is listed while it loads but answers only once
/// ready.
#[derive(Default)]
pub struct ModelRegistry {
    slots: RwLock<Vec<(String, Slot)>>,
}

impl ModelRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn declare(&self, name: &str) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if !slots.iter().any(|(n, _)| n == name) {
            slots.push((name.to_string(), Slot::Loading));
        }
    }

    pub fn set_ready(&self, name: &str, provider: Arc<dyn Provider>) {
        self.set(name, Slot::Ready(provider));
    }

    pub fn set_failed(&self, name: &str, why: String) {
        self.set(name, Slot::Failed(why));
    }

    /// Drops the provider: requests already holding it finish on it, and
    /// it is freed with the last of them.
    pub fn set_unloaded(&self, name: &str) {
        self.set(name, Slot::Unloaded);
    }

    /// Back to loading, keeping its place in the list.
    pub fn set_loading(&self, name: &str) {
        self.set(name, Slot::Loading);
    }

    /// Forgets a name; as with `set_unloaded`, running requests finish.
    pub fn remove(&self, name: &str) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        slots.retain(|(n, _)| n != name);
    }

    /// Whether `name` is ready to serve.
    pub fn is_ready(&self, name: &str) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .any(|(n, s)| n == name && matches!(s, Slot::Ready(_)))
    }

    fn set(&self, name: &str, slot: Slot) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        match slots.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = slot,
            None => slots.push((name.to_string(), slot)),
        }
    }

    pub fn names(&self) -> Vec<String> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Whether `name` is a declared model (or alias).
    pub fn contains(&self, name: &str) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().any(|(n, _)| n == name)
    }

    /// The first declared model: the default for endpoints without `model`.
    pub fn first(&self) -> Option<String> {
        self.names().into_iter().next()
    }

    pub fn resolve(&self, name: &str) -> Result<Arc<dyn Provider>, CoreError> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        match slots.iter().find(|(n, _)| n == name).map(|(_, s)| s) {
            Some(Slot::Ready(p)) => Ok(p.clone()),
            Some(Slot::Loading) => Err(CoreError::ModelNotReady {
                model: name.to_string(),
            }),
            Some(Slot::Failed(why)) => Err(CoreError::Internal(format!(
                "model `{name}` failed to load: {why}"
            ))),
            Some(Slot::Unloaded) => Err(CoreError::ModelUnloaded {
                model: name.to_string(),
            }),
            None => Err(CoreError::ModelNotFound {
                model: name.to_string(),
            }),
        }
    }

    pub fn ready(&self) -> Vec<(String, Arc<dyn Provider>)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter_map(|(n, s)| match s {
                Slot::Ready(p) => Some((n.clone(), p.clone())),
                _ => None,
            })
            .collect()
    }

    /// True when every declared model is ready (or unloaded on purpose),
    /// and one at least is ready.
    pub fn all_ready(&self) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().any(|(_, s)| matches!(s, Slot::Ready(_)))
            && slots
                .iter()
                .all(|(_, s)| matches!(s, Slot::Ready(_) | Slot::Unloaded))
    }

    pub fn failures(&self) -> Vec<(String, String)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter_map(|(n, s)| match s {
                Slot::Failed(why) => Some((n.clone(), why.clone())),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_is_not_found_and_loading_model_is_not_ready() {
        let reg = ModelRegistry::new();
        reg.declare("a");
        assert!(matches!(
            reg.resolve("b"),
            Err(CoreError::ModelNotFound { .. })
        ));
        assert!(matches!(
            reg.resolve("a"),
            Err(CoreError::ModelNotReady { .. })
        ));
        assert!(!reg.all_ready());
        reg.set_failed("a", "bad file".into());
        assert!(matches!(reg.resolve("a"), Err(CoreError::Internal(_))));
        assert_eq!(reg.failures().len(), 1);
    }

    #[test]
    fn unloaded_and_removed_models_answer_so_and_keep_the_order() {
        let reg = ModelRegistry::new();
        for n in ["a", "b", "c"] {
            reg.declare(n);
        }
        reg.set_unloaded("b");
        assert!(matches!(
            reg.resolve("b"),
            Err(CoreError::ModelUnloaded { .. })
        ));
        // Unloaded on purpose is not loading, but nothing serves yet.
        assert!(!reg.all_ready());
        reg.remove("a");
        assert!(matches!(
            reg.resolve("a"),
            Err(CoreError::ModelNotFound { .. })
        ));
        reg.set_loading("b");
        assert_eq!(reg.names(), vec!["b".to_string(), "c".to_string()]);
        assert!(matches!(
            reg.resolve("b"),
            Err(CoreError::ModelNotReady { .. })
        ));
        assert!(reg.contains("c") && !reg.contains("a"));
    }
}
