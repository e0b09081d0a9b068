//! Interned names: every SKU, location, node and transfer the hub has seen gets
//! a dense `u32` id, so the aggregate's rows carry no strings.

use std::collections::HashMap;
use std::hash::Hash;

/// One table of interned values: id → value and value → id.
#[derive(Clone, Debug)]
pub struct Interner<T> {
    values: Vec<T>,
    ids: HashMap<T, u32>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            ids: HashMap::new(),
        }
    }
}

impl<T: Clone + Eq + Hash> Interner<T> {
    /// The id of `v`, if it was interned.
    pub fn get(&self, v: &T) -> Option<u32> {
        self.ids.get(v).copied()
    }

    /// The id of `v`, interning it if new; `None` once 2^32 values exist.
    pub fn intern(&mut self, v: &T) -> Option<u32> {
        if let Some(id) = self.ids.get(v) {
            return Some(*id);
        }
        let id = u32::try_from(self.values.len()).ok()?;
        self.values.push(v.clone());
        self.ids.insert(v.clone(), id);
        Some(id)
    }

    /// Adds `v` under `id`, which must be the next id (loading a stored table).
    pub fn restore(&mut self, id: u32, v: T) -> bool {
        if id as usize != self.values.len() || self.ids.contains_key(&v) {
            return false;
        }
        self.ids.insert(v.clone(), id);
        self.values.push(v);
        true
    }

    /// The value of `id`.
    pub fn value(&self, id: u32) -> Option<&T> {
        self.values.get(id as usize)
    }

    /// How many values are interned.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The values from id `from` on, with their ids.
    pub fn since(&self, from: usize) -> impl Iterator<Item = (u32, &T)> {
        self.values
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, v)| (i as u32, v))
    }
}
