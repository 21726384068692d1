//! One core's registry: its connections and their topics. Touched only by its own core.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    rc::Rc,
    sync::Arc,
};

use bytes::Bytes;

use super::{
    clients::{Cluster, CoreMsg},
    ClientId, Clients,
};
use crate::{
    ws::{fanout::Fanout, shared::SharedRef, ClientHandle},
    Error,
};

/// Whether a connection is tracked is in its state (its options say), not here: 16 bytes an
/// entry, where a flag beside the two pointers took 24.
struct Entry {
    shared: SharedRef,
    /// A boxed `Vec`, not a set: one entry per open connection (8 bytes in every slot of the
    /// registry, where a `Vec` takes 24 and a set 48, and most connections subscribe to
    /// nothing), and a connection's few topics are searched in a line anyway.
    #[allow(clippy::box_collection)]
    topics: Option<Box<Vec<Arc<str>>>>,
}

impl Entry {
    fn tracked(&self) -> bool {
        self.shared.borrow().tracked()
    }

    fn topics(&self) -> &[Arc<str>] {
        self.topics.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// A core's connections (tracked ones count in `Clients::len` and receive broadcasts;
/// untracked ones are here only so shutdown can cut them), and who subscribes to what.
pub(crate) struct LocalCore {
    index: usize,
    cluster: Arc<Cluster>,
    entries: RefCell<HashMap<ClientId, Entry>>,
    topics: RefCell<HashMap<Arc<str>, HashSet<ClientId>>>,
}

impl LocalCore {
    pub(crate) fn new(index: usize, cluster: Arc<Cluster>) -> Self {
        Self {
            index,
            cluster,
            entries: RefCell::new(HashMap::new()),
            topics: RefCell::new(HashMap::new()),
        }
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub(crate) fn clients(&self) -> Clients {
        Clients::new(Arc::clone(&self.cluster))
    }

    pub(crate) fn register(&self, id: ClientId, shared: SharedRef) {
        let tracked = shared.borrow().tracked();
        self.entries.borrow_mut().insert(
            id,
            Entry {
                shared,
                topics: None,
            },
        );
        if tracked {
            self.cluster.client_count_changed(self.index, 1);
        }
    }

    /// Forgets a connection and all its subscriptions.
    pub(crate) fn remove(&self, id: ClientId) {
        let Some(entry) = self.entries.borrow_mut().remove(&id) else {
            return;
        };
        if entry.tracked() {
            self.cluster.client_count_changed(self.index, -1);
        }
        let mut topics = self.topics.borrow_mut();
        for topic in entry.topics.map(|topics| *topics).unwrap_or_default() {
            if let Some(subscribers) = topics.get_mut(&topic) {
                subscribers.remove(&id);
                if subscribers.is_empty() {
                    topics.remove(&topic);
                }
            }
            self.cluster.topic_count_changed(&topic, -1);
        }
    }

    /// Handles on the tracked connections.
    pub(crate) fn handles(&self) -> Vec<ClientHandle> {
        self.entries
            .borrow()
            .iter()
            .filter(|(_, e)| e.tracked())
            .map(|(&id, e)| ClientHandle::new(Rc::clone(&e.shared), id))
            .collect()
    }

    /// Every connection's state, tracked or not (for terminating at the drain deadline).
    pub(crate) fn all_shared(&self) -> Vec<SharedRef> {
        self.entries
            .borrow()
            .values()
            .map(|e| Rc::clone(&e.shared))
            .collect()
    }

    pub(crate) fn subscribe(&self, id: ClientId, topic: &str) -> bool {
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(&id) else {
            return false;
        };
        if entry.topics().iter().any(|t| &**t == topic) {
            return false;
        }
        let topic: Arc<str> = Arc::from(topic);
        entry
            .topics
            .get_or_insert_with(Box::default)
            .push(Arc::clone(&topic));
        self.topics
            .borrow_mut()
            .entry(Arc::clone(&topic))
            .or_default()
            .insert(id);
        self.cluster.topic_count_changed(&topic, 1);
        true
    }

    pub(crate) fn unsubscribe(&self, id: ClientId, topic: &str) -> bool {
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(&id) else {
            return false;
        };
        let Some(subscribed) = entry.topics.as_deref_mut() else {
            return false;
        };
        let Some(at) = subscribed.iter().position(|t| &**t == topic) else {
            return false;
        };
        let topic = subscribed.swap_remove(at);
        if subscribed.is_empty() {
            entry.topics = None;
        }
        let mut topics = self.topics.borrow_mut();
        if let Some(subscribers) = topics.get_mut(&topic) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                topics.remove(&topic);
            }
        }
        self.cluster.topic_count_changed(&topic, -1);
        true
    }

    pub(crate) fn topics_of(&self, id: ClientId) -> Vec<String> {
        let entries = self.entries.borrow();
        let mut topics: Vec<String> = entries
            .get(&id)
            .map(|e| e.topics().iter().map(|t| t.to_string()).collect())
            .unwrap_or_default();
        topics.sort();
        topics
    }

    /// Delivers to every tracked connection but `except`; returns how many accepted it.
    pub(crate) fn broadcast(&self, frame: &Bytes, except: Option<ClientId>) -> usize {
        // Collected first: a delivery may start a close, which must not find the registry
        // borrowed.
        let targets: Vec<SharedRef> = self
            .entries
            .borrow()
            .iter()
            .filter(|(id, e)| e.tracked() && Some(**id) != except)
            .map(|(_, e)| Rc::clone(&e.shared))
            .collect();
        deliver(&targets, frame)
    }

    /// Delivers to every subscriber of `topic` but `except`; returns how many accepted it.
    pub(crate) fn publish(&self, topic: &str, frame: &Bytes, except: Option<ClientId>) -> usize {
        let targets: Vec<SharedRef> = {
            let topics = self.topics.borrow();
            let entries = self.entries.borrow();
            match topics.get(topic) {
                None => return 0,
                Some(ids) => ids
                    .iter()
                    .filter(|id| Some(**id) != except)
                    .filter_map(|id| entries.get(id).map(|e| Rc::clone(&e.shared)))
                    .collect(),
            }
        };
        deliver(&targets, frame)
    }

    pub(crate) fn send_to(&self, id: ClientId, frame: Bytes) -> Result<(), Error> {
        let shared = self.entries.borrow().get(&id).map(|e| Rc::clone(&e.shared));
        match shared {
            Some(shared) => Fanout::new(frame).deliver(&mut shared.borrow_mut()),
            None => Err(Error::UnknownClient(id)),
        }
    }

    pub(crate) fn close(&self, id: ClientId, code: u16, reason: &str) -> Result<(), Error> {
        let shared = self.entries.borrow().get(&id).map(|e| Rc::clone(&e.shared));
        match shared {
            Some(shared) => {
                shared.borrow_mut().start_close(code, reason);
                Ok(())
            }
            None => Err(Error::UnknownClient(id)),
        }
    }

    /// Handles one message from the inbox.
    pub(crate) fn handle(&self, msg: CoreMsg) {
        match msg {
            CoreMsg::Broadcast { frame, except } => {
                self.broadcast(&frame, except);
            }
            CoreMsg::Publish {
                topic,
                frame,
                except,
            } => {
                self.publish(&topic, &frame, except);
            }
            CoreMsg::SendTo { id, frame } => {
                if let Err(e) = self.send_to(id, frame) {
                    tracing::debug!(%id, "send_to from another core not delivered: {e}");
                }
            }
            CoreMsg::Close { id, code, reason } => {
                let _ = self.close(id, code, &reason);
            }
            CoreMsg::Visit(visit) => visit(&self.handles()),
        }
    }
}

/// Queues `frame` on each target (compressed for those with permessage-deflate, once per
/// window size: see [`Fanout`]); returns how many accepted it.
fn deliver(targets: &[SharedRef], frame: &Bytes) -> usize {
    let mut fanout = Fanout::new(frame.clone());
    targets
        .iter()
        .filter(|shared| fanout.deliver(&mut shared.borrow_mut()).is_ok())
        .count()
}
