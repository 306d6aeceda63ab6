//! A task's whole log as plain text, written a piece at a time: the same
//! text as [`cuttle_model::task::render_raw_log`], byte for byte, read from
//! the store a page of one activity's lines at a time. Memory stays bounded
//! whatever the log's size, and no connection is held between pages, so a
//! slow reader of a long log holds back nobody else.

use crate::Result;
use cuttle_model::task::{raw_heading, raw_line, raw_line_precedes, Activity, LogLine};
use cuttle_store::Store;
use std::collections::{HashMap, VecDeque};

/// Lines read from the store at a time.
pub const PAGE_LINES: i64 = 1_000;
/// Text handed out at a time, roughly: a piece ends after the line that
/// reaches this.
const PIECE_BYTES: usize = 64 * 1024;

/// The raw log of one task, read on demand with [`RawLog::next_piece`].
pub struct RawLog {
    store: Store,
    task_id: String,
    activities: Vec<Activity>,
    /// The roots not yet written, in the order they are written.
    roots: VecDeque<usize>,
    /// Each activity's children, in the order the raw log shows them among
    /// themselves: by start, in creation order at equal starts, unstarted
    /// ones last.
    children: HashMap<usize, Vec<usize>>,
    /// The activities being written, outermost first.
    open: Vec<Open>,
}

/// An activity whose heading is written and whose lines and children are
/// being interleaved.
struct Open {
    activity: usize,
    depth: usize,
    children: VecDeque<usize>,
    /// Read and not yet written, in order.
    lines: VecDeque<LogLine>,
    /// The position of the last line read.
    after: i64,
    read_all: bool,
}

impl RawLog {
    /// Reads the activity tree of `task_id` (its lines come later, page by
    /// page).
    pub async fn open(store: Store, task_id: &str) -> Result<RawLog> {
        let activities = store.task_activities(task_id).await?;
        let index: HashMap<&str, usize> = activities
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let mut roots = VecDeque::new();
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, a) in activities.iter().enumerate() {
            match a.parent_id.as_deref() {
                None => roots.push_back(i),
                // A node whose parent is unknown is not shown, as in the tree.
                Some(p) => {
                    if let Some(&parent) = index.get(p) {
                        children.entry(parent).or_default().push(i);
                    }
                }
            }
        }
        for list in children.values_mut() {
            // Stable: creation order among equal starts.
            list.sort_by_key(|&c| (activities[c].started.is_none(), activities[c].started));
        }
        Ok(RawLog {
            store,
            task_id: task_id.to_owned(),
            activities,
            roots,
            children,
            open: vec![],
        })
    }

    /// The next piece of text, or `None` once the whole log is written.
    pub async fn next_piece(&mut self) -> Result<Option<String>> {
        let mut out = String::new();
        while out.len() < PIECE_BYTES {
            if self.open.is_empty() {
                let Some(root) = self.roots.pop_front() else {
                    break;
                };
                self.enter(&mut out, root, 0);
                continue;
            }
            self.read_lines().await?;
            let Some(top) = self.open.last_mut() else {
                continue;
            };
            let next_child = top.children.front().copied();
            let line_first = top.lines.front().is_some_and(|l| {
                next_child
                    .is_none_or(|c| raw_line_precedes(l.occurred_at, self.activities[c].started))
            });
            if line_first {
                if let Some(l) = top.lines.pop_front() {
                    raw_line(
                        &mut out,
                        l.occurred_at,
                        l.category,
                        &l.message,
                        top.depth + 1,
                    );
                }
            } else if let Some(c) = top.children.pop_front() {
                let depth = top.depth + 1;
                self.enter(&mut out, c, depth);
            } else {
                self.open.pop();
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Writes the heading of activity `a` and opens it.
    fn enter(&mut self, out: &mut String, a: usize, depth: usize) {
        let activity = &self.activities[a];
        raw_heading(out, &activity.name, activity.status, depth);
        self.open.push(Open {
            activity: a,
            depth,
            children: self.children.remove(&a).unwrap_or_default().into(),
            lines: VecDeque::new(),
            after: 0,
            read_all: false,
        });
    }

    /// Reads the innermost open activity's next page of lines once those
    /// read are written.
    async fn read_lines(&mut self) -> Result<()> {
        let Some(top) = self.open.last_mut() else {
            return Ok(());
        };
        if !top.lines.is_empty() || top.read_all {
            return Ok(());
        }
        let page = self
            .store
            .activity_log_page(
                &self.task_id,
                &self.activities[top.activity].id,
                top.after,
                PAGE_LINES,
            )
            .await?;
        top.read_all = (page.len() as i64) < PAGE_LINES;
        if let Some(last) = page.last() {
            top.after = last.seq;
        }
        top.lines = page.into();
        Ok(())
    }
}
