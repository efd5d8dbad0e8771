//! What the update manager keeps for rollbacks, read from its journal (read only: the journal's
//! format and writes stay in `journal.rs`/`apply.rs`) for the commands that free space
//! (`system prune`, `container prune`, the agent's image GC): they must never remove a
//! deployment, a rollback target, their images or the image an update in progress has loaded.

use std::collections::BTreeSet;
use std::path::Path;

use super::journal::{Journal, Retired};

#[derive(Debug, Default)]
pub struct Targets {
    /// Container ids of deployments and of their rollback targets (kept stopped, named
    /// `app.prev-N`), and the old container of an update in progress.
    pub containers: BTreeSet<String>,
    /// Image ids (`sha256:...`) of deployments, their rollback targets and an active update.
    pub images: BTreeSet<String>,
}

impl Targets {
    /// From `<root>/updates/journal`; an unreadable journal is an error (guessing could drop a
    /// rollback target).
    pub fn load(root: &Path) -> berth_runtime::Result<Targets> {
        let j = Journal::load(root)?;
        let mut t = Targets::default();
        for d in j.deployments.values() {
            t.containers.insert(d.container.clone());
            t.images.insert(d.image_id.clone());
            for p in &d.previous {
                t.keep(p);
            }
            // An application's services, and those of the revisions kept for a rollback.
            for m in d.app.iter().flat_map(|a| a.services.iter().chain(a.previous.iter().flatten())) {
                t.keep(&m.container);
            }
        }
        if let Some(a) = &j.active {
            t.images.extend(a.image_id.clone());
            if let Some(o) = &a.old {
                t.keep(o);
            }
            for u in a.app.iter().flat_map(|r| r.units.iter()) {
                t.images.extend(u.image_id.clone());
                t.containers.extend(u.new.clone());
                if let Some(o) = &u.old {
                    t.keep(o);
                }
            }
        }
        t.images.retain(|i| !i.is_empty());
        t.containers.retain(|c| !c.is_empty());
        Ok(t)
    }

    fn keep(&mut self, r: &Retired) {
        self.containers.insert(r.container.clone());
        self.images.insert(r.image_id.clone());
    }
}
