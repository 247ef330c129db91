//! The registry that names the plugins, and the one configuration is parsed with.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::Definition;

/// The plugins a gateway knows, by name. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    definitions: Arc<BTreeMap<Arc<str>, Arc<Definition>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.definitions.keys()).finish()
    }
}

/// Why a definition was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is taken (by a built-in plugin or an earlier registration).
    #[error("a plugin named {0:?} is already registered")]
    Taken(String),
    /// The name is not lowercase letters, digits, `-` and `_`.
    #[error("plugin name {0:?} is not lowercase letters, digits, '-' and '_'")]
    Name(String),
}

// `Registry::builtin` and `Default` are defined with the built-in plugins, in `config`.
impl Registry {
    /// A registry without any plugin.
    pub(crate) fn empty() -> Self {
        Self {
            definitions: Arc::new(BTreeMap::new()),
        }
    }

    /// Adds a plugin.
    pub fn register(&mut self, definition: Definition) -> Result<&mut Self, RegistryError> {
        let name: Arc<str> = definition.name().into();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(RegistryError::Name(name.to_string()));
        }
        if self.definitions.contains_key(&name) {
            return Err(RegistryError::Taken(name.to_string()));
        }
        Arc::make_mut(&mut self.definitions).insert(name, Arc::new(definition));
        Ok(self)
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Definition>> {
        self.definitions.get(name)
    }

    /// The names of every plugin, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.definitions.keys().map(|n| &**n)
    }

    /// Runs `f` (which parses configuration) with this registry naming the plugins parsed on
    /// this thread; the previous one is back afterwards, also when `f` panics.
    pub(crate) fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Registry>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }
}

thread_local! {
    /// The registry plugins are parsed with on this thread (serde's `Deserialize` has no
    /// other way in); the built-in one when unset.
    static CURRENT: RefCell<Option<Registry>> = const { RefCell::new(None) };
}

/// The definition named `name` in the registry in scope (`fallback` when none is); and every
/// name, for errors.
pub(crate) fn lookup(name: &str, fallback: &Registry) -> Result<Arc<Definition>, String> {
    CURRENT.with(|c| {
        let current = c.borrow();
        let registry = current.as_ref().unwrap_or(fallback);
        registry.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = registry.names().collect();
            format!(
                "plugin {name:?} is not supported here (this gateway runs {}; an application adds its own with tower_gateway::plugin::Registry::register)",
                known.join(", ")
            )
        })
    })
}
