//! Rise/fall hysteresis of one check: a pure function of the previous state
//! and one probe result. No clocks, no I/O. The core is its only user: it
//! applies every raw probe result the health scheduler reports and
//! publishes the state in the snapshot, where the scheduler reads whether
//! a change is pending (fast re-probe).
//!
//! A check starts `Unknown`. From `Unknown`, `rise` consecutive successes make
//! it `Up` and `fall` consecutive failures make it `Down`. From `Up`, only
//! `fall` consecutive failures make it `Down`; from `Down`, only `rise`
//! consecutive successes make it `Up`. A result that agrees with the verdict
//! resets the opposite streak.

/// The verdict of a check after hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unknown,
    Up,
    Down,
}

/// Hysteresis state: the verdict and the current streaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    pub verdict: Verdict,
    /// Consecutive successes so far (0 after a failure).
    pub successes: u32,
    /// Consecutive failures so far (0 after a success).
    pub failures: u32,
}

impl Default for CheckState {
    fn default() -> Self {
        CheckState {
            verdict: Verdict::Unknown,
            successes: 0,
            failures: 0,
        }
    }
}

impl CheckState {
    /// Applies one probe result. Returns the new state; compare verdicts to
    /// see whether it changed.
    pub fn step(self, ok: bool, rise: u32, fall: u32) -> CheckState {
        let (successes, failures) = if ok {
            (self.successes.saturating_add(1), 0)
        } else {
            (0, self.failures.saturating_add(1))
        };
        let verdict = match self.verdict {
            Verdict::Up if failures >= fall => Verdict::Down,
            Verdict::Down if successes >= rise => Verdict::Up,
            Verdict::Unknown if successes >= rise => Verdict::Up,
            Verdict::Unknown if failures >= fall => Verdict::Down,
            v => v,
        };
        CheckState {
            verdict,
            successes,
            failures,
        }
    }

    /// True while the last results disagree with the verdict (or the verdict
    /// is still unknown): a change is pending, and the scheduler probes at
    /// the fast interval.
    pub fn in_transition(&self) -> bool {
        match self.verdict {
            Verdict::Unknown => true,
            Verdict::Up => self.failures > 0,
            Verdict::Down => self.successes > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(results: &[bool], rise: u32, fall: u32) -> Vec<CheckState> {
        let mut s = CheckState::default();
        results
            .iter()
            .map(|&ok| {
                s = s.step(ok, rise, fall);
                s
            })
            .collect()
    }

    #[test]
    fn rises_after_rise_successes() {
        let states = run(&[true, true, true], 3, 2);
        assert_eq!(states[1].verdict, Verdict::Unknown);
        assert_eq!(states[2].verdict, Verdict::Up);
    }

    #[test]
    fn falls_after_fall_failures_and_one_loss_is_ignored() {
        let mut s = CheckState::default();
        for _ in 0..3 {
            s = s.step(true, 3, 2);
        }
        s = s.step(false, 3, 2);
        assert_eq!(s.verdict, Verdict::Up);
        assert!(s.in_transition());
        s = s.step(true, 3, 2);
        assert_eq!(s.verdict, Verdict::Up);
        assert!(!s.in_transition());
        s = s.step(false, 3, 2).step(false, 3, 2);
        assert_eq!(s.verdict, Verdict::Down);
    }

    proptest! {
        /// Strictly alternating results never change an established verdict
        /// when rise and fall are at least 2.
        #[test]
        fn flapping_never_changes_state(rise in 2u32..6, fall in 2u32..6, n in 1usize..200, start_up in any::<bool>()) {
            let mut s = CheckState { verdict: if start_up { Verdict::Up } else { Verdict::Down }, successes: 0, failures: 0 };
            let before = s.verdict;
            for i in 0..n {
                s = s.step(i % 2 == 0, rise, fall);
                prop_assert_eq!(s.verdict, before);
            }
        }

        /// A verdict changes only when the last `rise` (resp. `fall`) results
        /// were all successes (resp. failures).
        #[test]
        fn change_requires_full_streak(results in proptest::collection::vec(any::<bool>(), 1..300), rise in 1u32..5, fall in 1u32..5) {
            let states = run(&results, rise, fall);
            let mut prev = Verdict::Unknown;
            for (i, st) in states.iter().enumerate() {
                if st.verdict != prev {
                    let need = if st.verdict == Verdict::Up { rise } else { fall } as usize;
                    prop_assert!(i + 1 >= need);
                    let want = st.verdict == Verdict::Up;
                    prop_assert!(results[i + 1 - need..=i].iter().all(|&r| r == want));
                }
                prev = st.verdict;
            }
        }
    }
}
