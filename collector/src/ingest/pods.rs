//! Pod identities on a stream: each declared identity gets the node's stable pod id (a UID keeps
//! its id across streams and restarts), and a node keeps at most `--max-pods-per-node`
//! identities in memory, forgetting first those its newest batch does not reference, oldest id
//! first (pods that are gone). Pure functions over the node's maps, tested with data.

use std::collections::HashMap;

use bakery_proto::v1::PodIdentity;

use crate::store::{PodRecord, PodRow};

/// The identities one batch declares, numbered.
#[derive(Debug, Default)]
pub struct Numbering {
    /// Identities to store: new UIDs, and known UIDs whose identity changed (same id).
    pub rows: Vec<PodRow>,
    /// Stream-local ref -> collector pod id, for this batch's declarations.
    pub refs: Vec<(u32, u32)>,
    /// The node's next free pod id once `rows` are taken.
    pub next_pod_id: u32,
}

/// Numbers `declared` for node `node_id`, whose kept identities are `kept` (by id) and
/// `by_uid`, and whose next free id is `next_pod_id`.
pub fn number(
    node_id: u32,
    declared: &[PodIdentity],
    by_uid: &HashMap<String, u32>,
    kept: &HashMap<u32, PodRecord>,
    next_pod_id: u32,
) -> Numbering {
    let mut numbering = Numbering { next_pod_id, ..Numbering::default() };
    for identity in declared {
        let record = PodRecord {
            uid: identity.uid.clone(),
            qos_class: identity.qos_class.clone(),
            cgroup_path: identity.cgroup_path.clone(),
            host_network: identity.host_network,
        };
        let pod_id = match numbering.rows.iter().find(|row| row.pod.uid == identity.uid) {
            // Declared twice in one batch: the first numbering holds.
            Some(row) => row.pod_id,
            None => match by_uid.get(&identity.uid) {
                Some(pod_id) if kept.get(pod_id) == Some(&record) => *pod_id,
                // Same pod, changed identity (for example a new cgroup path): keep its id,
                // store the new identity.
                Some(pod_id) => {
                    numbering.rows.push(PodRow { node_id, pod_id: *pod_id, pod: record });
                    *pod_id
                }
                None => {
                    let pod_id = numbering.next_pod_id;
                    numbering.next_pod_id = numbering.next_pod_id.saturating_add(1);
                    numbering.rows.push(PodRow { node_id, pod_id, pod: record });
                    pod_id
                }
            },
        };
        numbering.refs.push((identity.pod_ref, pod_id));
    }
    numbering
}

/// The kept identities to forget so that `kept` and the new ids among `rows` fit in `max`:
/// ids that `referenced` (what the batch's samples use, sorted) does not hold, smallest (oldest)
/// first.
/// `None` when even that is not enough: the batch references more pods than a node keeps.
pub fn to_forget(kept: &HashMap<u32, PodRecord>, rows: &[PodRow], referenced: &[u32], max: usize) -> Option<Vec<u32>> {
    let new = rows.iter().filter(|row| !kept.contains_key(&row.pod_id)).count();
    let excess = (kept.len() + new).saturating_sub(max);
    if excess == 0 {
        return Some(Vec::new());
    }
    let mut candidates: Vec<u32> = kept.keys().filter(|id| referenced.binary_search(id).is_err()).copied().collect();
    if candidates.len() < excess {
        return None;
    }
    candidates.sort_unstable();
    candidates.truncate(excess);
    Some(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(pod_ref: u32, uid: &str, cgroup: &str) -> PodIdentity {
        PodIdentity { pod_ref, uid: uid.into(), cgroup_path: cgroup.into(), ..PodIdentity::default() }
    }

    fn record(uid: &str, cgroup: &str) -> PodRecord {
        PodRecord { uid: uid.into(), cgroup_path: cgroup.into(), ..PodRecord::default() }
    }

    #[test]
    fn a_uid_keeps_its_id_and_a_changed_identity_is_stored_again() {
        let kept = HashMap::from([(1, record("web", "/a")), (2, record("db", "/b"))]);
        let by_uid = HashMap::from([("web".to_string(), 1), ("db".to_string(), 2)]);
        let declared = [
            identity(7, "web", "/a"),
            identity(8, "db", "/moved"),
            identity(9, "new", "/c"),
            identity(10, "new", "/c"),
        ];
        let numbering = number(5, &declared, &by_uid, &kept, 3);
        assert_eq!(numbering.refs, [(7, 1), (8, 2), (9, 3), (10, 3)]);
        let rows: Vec<(u32, &str)> = numbering.rows.iter().map(|r| (r.pod_id, r.pod.cgroup_path.as_str())).collect();
        assert_eq!(rows, [(2, "/moved"), (3, "/c")], "the changed db and the new pod, once");
        assert_eq!(numbering.next_pod_id, 4);
    }

    #[test]
    fn over_the_cap_the_oldest_unreferenced_identities_are_forgotten() {
        let kept: HashMap<u32, PodRecord> = (1..=4).map(|id| (id, record(&format!("p{id}"), "/"))).collect();
        let new = |id: u32| PodRow { node_id: 1, pod_id: id, pod: record("n", "/") };
        // room for one more: nothing to forget
        assert_eq!(to_forget(&kept, &[new(5)], &[], 5), Some(vec![]));
        // two new, cap 4: the two oldest not referenced go (1 is referenced)
        let referenced = [1, 5, 6];
        assert_eq!(to_forget(&kept, &[new(5), new(6)], &referenced, 4), Some(vec![2, 3]));
        // a changed identity of a kept pod takes no new room
        assert_eq!(to_forget(&kept, &[new(2)], &[], 4), Some(vec![]));
        // every kept pod is referenced: cannot fit
        assert_eq!(to_forget(&kept, &[new(5)], &[1, 2, 3, 4, 5], 4), None);
    }
}
