//! The declared transition table of a phase machine.

use std::{collections::HashSet, fmt, time::Duration};

use super::Phase;

/// The declared edges and special phases of a phase machine.
///
/// Build it once with [`Transitions::builder`]; [`TransitionsBuilder::build`] checks
/// that the table makes sense (a ready and a failed phase, a retry edge out of the failed
/// phase, every phase reachable, ...), so a mistake shows at start-up, not at reconcile time.
///
/// Besides the declared edges, two moves are always allowed:
///
/// - **to the failed phase, from any phase**: a handler may fail anywhere
///   ([`Transition::fail`](super::Transition::fail));
/// - **to the initial phase, from an unreadable one**: when `status.phase` holds a name
///   the machine does not know, the engine starts over (reason `UnknownPhase`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::phase::Transitions;
///
/// kube_reconcile::phases! {
///     /// Where a database is in its life.
///     pub enum DbPhase { Pending, Provisioning, Configuring, Deploying, Verifying, Ready, Updating, Failed }
/// }
/// use DbPhase::*;
///
/// let table = Transitions::builder(Pending)
///     .path([Pending, Provisioning, Configuring, Deploying, Verifying, Ready])
///     .edge(Verifying, Failed)
///     .edge(Failed, Provisioning)
///     .path([Ready, Updating, Verifying])
///     .ready(Ready)
///     .updating(Updating)
///     .failed(Failed)
///     .retry(Provisioning)
///     .deadline(Provisioning, Duration::from_secs(600))
///     .build()?;
/// assert!(table.allows(Verifying, Ready));
/// assert!(table.allows(Configuring, Failed)); // failing is always allowed
/// assert!(!table.allows(Pending, Ready));
/// # Ok::<(), kube_reconcile::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Transitions<P: Phase> {
    initial: P,
    edges: HashSet<(P, P)>,
    ready: P,
    updating: Option<P>,
    failed: P,
    retry: P,
    deadlines: Vec<(P, Duration)>,
    /// Each phase's distance from the initial one along the declared edges: how far
    /// along an object in it is.
    ranks: Vec<(P, u32)>,
}

impl<P: Phase> Transitions<P> {
    /// Starts a table whose objects begin in `initial`.
    pub fn builder(initial: P) -> TransitionsBuilder<P> {
        TransitionsBuilder {
            initial,
            edges: Vec::new(),
            ready: None,
            updating: None,
            failed: None,
            retry: None,
            deadlines: Vec::new(),
        }
    }

    /// The phase a new object starts in.
    pub(crate) fn initial(&self) -> P {
        self.initial
    }

    /// The steady phase: the object is what its spec asks for.
    pub(crate) fn ready(&self) -> P {
        self.ready
    }

    /// The phase a ready object moves to when its spec changes, if declared.
    pub(crate) fn updating(&self) -> Option<P> {
        self.updating
    }

    /// The failure phase, reachable from every phase.
    pub(crate) fn failed(&self) -> P {
        self.failed
    }

    /// How far along an object in `phase` is: its distance from the initial phase.
    pub(crate) fn rank(&self, phase: P) -> u32 {
        self.ranks
            .iter()
            .find_map(|&(p, rank)| (p == phase).then_some(rank))
            .unwrap_or(0)
    }

    /// Where the failure phase goes when its retry is due.
    pub(crate) fn retry(&self) -> P {
        self.retry
    }

    /// Whether a handler in `from` may move to `to`.
    #[doc(hidden)]
    pub fn allows(&self, from: P, to: P) -> bool {
        to == self.failed || self.edges.contains(&(from, to))
    }

    /// How long an object may stay in `phase` before it fails with `PhaseTimeout`.
    pub(crate) fn deadline(&self, phase: P) -> Option<Duration> {
        self.deadlines
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
    }
}

/// Builds a [`Transitions`] table; see there.
#[derive(Clone, Debug)]
#[must_use]
pub struct TransitionsBuilder<P: Phase> {
    initial: P,
    edges: Vec<(P, P)>,
    ready: Option<P>,
    updating: Option<P>,
    failed: Option<P>,
    retry: Option<P>,
    deadlines: Vec<(P, Duration)>,
}

impl<P: Phase> TransitionsBuilder<P> {
    /// Declares the edge `from → to`.
    pub fn edge(mut self, from: P, to: P) -> Self {
        self.edges.push((from, to));
        self
    }

    /// Declares an edge between each pair of consecutive phases of `phases`.
    pub fn path(mut self, phases: impl IntoIterator<Item = P>) -> Self {
        let mut phases = phases.into_iter();
        if let Some(mut from) = phases.next() {
            for to in phases {
                self.edges.push((from, to));
                from = to;
            }
        }
        self
    }

    /// The steady phase. Required.
    pub fn ready(mut self, phase: P) -> Self {
        self.ready = Some(phase);
        self
    }

    /// The phase a ready object moves to when `metadata.generation` passes
    /// `status.observedGeneration`; the edge from the ready phase must be declared.
    /// Without it, a spec change reruns the ready phase's handler.
    pub fn updating(mut self, phase: P) -> Self {
        self.updating = Some(phase);
        self
    }

    /// The failure phase. Required.
    pub fn failed(mut self, phase: P) -> Self {
        self.failed = Some(phase);
        self
    }

    /// Where the failure phase goes when its retry is due; the edge must be declared.
    /// Without it, the failure phase's only declared way out is used.
    pub fn retry(mut self, phase: P) -> Self {
        self.retry = Some(phase);
        self
    }

    /// An object that stays in `phase` longer than `limit` fails with reason `PhaseTimeout`.
    pub fn deadline(mut self, phase: P, limit: Duration) -> Self {
        self.deadlines.retain(|(p, _)| *p != phase);
        self.deadlines.push((phase, limit));
        self
    }

    /// Checks the table.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming what is missing or inconsistent.
    pub fn build(self) -> Result<Transitions<P>, crate::ConfigError> {
        Ok(self.checked()?)
    }

    fn checked(self) -> Result<Transitions<P>, TableError> {
        let ready = self.ready.ok_or(TableError::Missing("ready"))?;
        let failed = self.failed.ok_or(TableError::Missing("failed"))?;
        let edges: HashSet<(P, P)> = self.edges.iter().copied().collect();
        let name = |p: P| p.name();
        if let Some(&(from, _)) = edges.iter().find(|(from, to)| from == to) {
            return Err(TableError::SelfEdge(name(from)));
        }
        if ready == failed {
            return Err(TableError::ReadyIsFailed(name(ready)));
        }
        let retry = if let Some(retry) = self.retry {
            retry
        } else {
            let mut outs = edges.iter().filter(|(from, _)| *from == failed);
            match (outs.next(), outs.next()) {
                (Some(&(_, to)), None) => to,
                _ => return Err(TableError::NoRetryEdge(name(failed))),
            }
        };
        if !edges.contains(&(failed, retry)) {
            return Err(TableError::Undeclared {
                what: "retry",
                from: name(failed),
                to: name(retry),
            });
        }
        if let Some(updating) = self.updating
            && !edges.contains(&(ready, updating))
        {
            return Err(TableError::Undeclared {
                what: "updating",
                from: name(ready),
                to: name(updating),
            });
        }
        for &(phase, limit) in &self.deadlines {
            if phase == ready || phase == failed {
                return Err(TableError::DeadlineOnRest(name(phase)));
            }
            if limit.is_zero() {
                return Err(TableError::ZeroDeadline(name(phase)));
            }
        }
        // Every phase that appears must be reachable from the initial one.
        let mut reached = vec![self.initial, failed];
        let mut i = 0;
        while i < reached.len() {
            let from = reached[i];
            for &(f, to) in &edges {
                if f == from && !reached.contains(&to) {
                    reached.push(to);
                }
            }
            i += 1;
        }
        let mentioned = edges
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .chain([ready, retry])
            .chain(self.updating)
            .chain(self.deadlines.iter().map(|(p, _)| *p));
        for phase in mentioned {
            if !reached.contains(&phase) {
                return Err(TableError::Unreachable(name(phase)));
            }
        }
        let ranks = ranks(self.initial, failed, &edges);
        Ok(Transitions {
            initial: self.initial,
            edges,
            ready,
            updating: self.updating,
            failed,
            retry,
            deadlines: self.deadlines,
            ranks,
        })
    }
}

/// Breadth-first distances from `initial` over `edges`; the failed phase (a resting
/// point every phase can reach) ranks 0.
fn ranks<P: Phase>(initial: P, failed: P, edges: &HashSet<(P, P)>) -> Vec<(P, u32)> {
    let mut ranks = vec![(initial, 0)];
    let mut i = 0;
    while i < ranks.len() {
        let (from, rank) = ranks[i];
        for &(f, to) in edges {
            if f == from && to != failed && !ranks.iter().any(|(p, _)| *p == to) {
                ranks.push((to, rank + 1));
            }
        }
        i += 1;
    }
    ranks
}

/// What is wrong with a transition table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TableError {
    /// A required special phase was not declared.
    #[error("the table declares no {0} phase")]
    Missing(&'static str),
    /// An edge from a phase to itself: staying is `Transition::stay`, not an edge.
    #[error("edge {0} -> {0} goes nowhere; a handler stays with Transition::stay")]
    SelfEdge(&'static str),
    /// The ready and failed phases are the same.
    #[error("{0} cannot be both the ready and the failed phase")]
    ReadyIsFailed(&'static str),
    /// The failed phase has no single way out and no retry phase was named.
    #[error("failed phase {0} needs a retry phase: declare one edge out of it or call retry()")]
    NoRetryEdge(&'static str),
    /// A special move is not among the declared edges.
    #[error("the {what} move {from} -> {to} is not a declared edge")]
    Undeclared {
        /// Which special move.
        what: &'static str,
        /// From.
        from: &'static str,
        /// To.
        to: &'static str,
    },
    /// A deadline on the ready or failed phase, where objects rest.
    #[error("phase {0} is a resting phase and cannot have a deadline")]
    DeadlineOnRest(&'static str),
    /// A zero deadline.
    #[error("the deadline of phase {0} is zero")]
    ZeroDeadline(&'static str),
    /// A phase no path from the initial phase reaches.
    #[error("phase {0} cannot be reached from the initial phase")]
    Unreachable(&'static str),
}

impl<P: Phase> fmt::Display for Transitions<P> {
    /// The table as Graphviz-free text, one declared edge per line, sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut edges: Vec<_> = self
            .edges
            .iter()
            .map(|(a, b)| format!("{} -> {}", a.name(), b.name()))
            .collect();
        edges.sort();
        for edge in edges {
            writeln!(f, "{edge}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::phases! {
        /// Test phases.
        enum P { A, B, C, Ready, Failed, Lost }
    }

    fn base() -> TransitionsBuilder<P> {
        Transitions::builder(P::A)
            .path([P::A, P::B, P::C, P::Ready])
            .edge(P::Failed, P::B)
            .ready(P::Ready)
            .failed(P::Failed)
    }

    #[test]
    fn a_sound_table_builds_and_infers_the_retry_phase() {
        let table = base().build().unwrap();
        assert_eq!(table.retry(), P::B);
        assert!(table.allows(P::A, P::B));
        assert!(table.allows(P::C, P::Failed));
        assert!(!table.allows(P::A, P::C));
        assert_eq!(table.to_string().lines().count(), 4);
    }

    #[test]
    fn each_phase_ranks_by_its_distance_from_the_initial_one() {
        // A shortcut A -> C makes C one step away; the failed phase is a resting point.
        let table = base()
            .edge(P::A, P::C)
            .edge(P::C, P::Failed)
            .build()
            .unwrap();
        let ranks: Vec<_> = [P::A, P::B, P::C, P::Ready, P::Failed]
            .into_iter()
            .map(|p| table.rank(p))
            .collect();
        assert_eq!(ranks, [0, 1, 1, 2, 0]);
    }

    #[test]
    fn mistakes_are_named() {
        let no_ready = Transitions::builder(P::A).failed(P::Failed).build();
        assert_eq!(no_ready.unwrap_err().table(), TableError::Missing("ready"));
        let unreachable = base().edge(P::Lost, P::A).build().unwrap_err().table();
        assert_eq!(unreachable, TableError::Unreachable("Lost"));
        let bad_update = base().updating(P::A).build().unwrap_err().table();
        assert!(matches!(
            bad_update,
            TableError::Undeclared {
                what: "updating",
                ..
            }
        ));
        let two_ways = base().edge(P::Failed, P::A).build().unwrap_err().table();
        assert_eq!(two_ways, TableError::NoRetryEdge("Failed"));
        assert!(base().edge(P::Failed, P::A).retry(P::A).build().is_ok());
        let rest = base().deadline(P::Ready, Duration::from_secs(1)).build();
        assert_eq!(
            rest.unwrap_err().table(),
            TableError::DeadlineOnRest("Ready")
        );
        let zero = base().deadline(P::B, Duration::ZERO).build();
        assert_eq!(zero.unwrap_err().table(), TableError::ZeroDeadline("B"));
        let selfish = base().edge(P::B, P::B).build().unwrap_err().table();
        assert_eq!(
            selfish.to_string(),
            "edge B -> B goes nowhere; a handler stays with Transition::stay"
        );
    }
}
