//! What the update manager keeps for rollbacks, read from its journal (read only: the journal's
//! format and writes stay in `journal.rs`/`apply.rs`) for the commands that free space
//! (`system prune`, `container prune`, the agent's image GC): they must never remove a
//! deployment, a rollback target, their images or the image an update in progress has loaded.

use std::collections::BTreeSet;
use std::path::Path;

use super::journal::Journal;

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
                t.containers.insert(p.container.clone());
                t.images.insert(p.image_id.clone());
            }
        }
        if let Some(a) = &j.active {
            t.images.extend(a.image_id.clone());
            if let Some(o) = &a.old {
                t.containers.insert(o.container.clone());
                t.images.insert(o.image_id.clone());
            }
        }
        t.images.retain(|i| !i.is_empty());
        t.containers.retain(|c| !c.is_empty());
        Ok(t)
    }
}
