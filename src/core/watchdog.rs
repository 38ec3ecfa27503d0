//! The service manager's watchdog, fed by the core loop itself:
//! [`super::Core::run`] wakes for [`Watchdog::next`] and calls
//! [`Watchdog::tick`] after every input or timer it handles, so the pings
//! stop as soon as the loop stops turning (a wedged core gets restarted,
//! not only a dead process). What a ping does (an `sd_notify` datagram) is
//! the caller's closure; this module only keeps the time.

use std::time::Duration;

use tokio::time::Instant;

pub struct Watchdog {
    every: Duration,
    next: Instant,
    ping: Box<dyn Fn() + Send>,
}

impl Watchdog {
    /// Pings now and then every `every`.
    pub fn new(every: Duration, ping: impl Fn() + Send + 'static) -> Watchdog {
        Watchdog {
            every,
            next: Instant::now(),
            ping: Box::new(ping),
        }
    }

    /// When the next ping is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Pings if one is due at `now`, and schedules the next.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next {
            (self.ping)();
            self.next = now + self.every;
        }
    }
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("every", &self.every)
            .field("next", &self.next)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::core::{Core, TokioClock};

    const CONFIG: &str = "node: {name: n1, pop: ams, router_id: 192.0.2.1, asn: 64512}\n\
        pops:\n  - name: ams\n    prefixes: [203.0.113.0/24]\n    addresses: [192.0.2.10]\n    \
        checks: [{name: m, type: file, path: /nonexistent/anypop-watchdog-test, healthy_when: absent}]\n";

    #[tokio::test(start_paused = true)]
    async fn the_core_loop_pings_from_its_own_task_until_it_stops() {
        let config = Arc::new(crate::config::parse(CONFIG).unwrap_or_else(|e| panic!("{e}")));
        type Pings = Vec<(Option<tokio::task::Id>, Instant)>;
        let pings: Arc<Mutex<Pings>> = Arc::default();
        let p = pings.clone();
        let start = Instant::now();
        let watchdog = Watchdog::new(Duration::from_secs(1), move || {
            if let Ok(mut v) = p.lock() {
                v.push((tokio::task::try_id(), Instant::now()));
            }
        });
        let (handle, task) = Core::spawn_watched(
            config,
            BTreeMap::new(),
            TokioClock::starting_at(std::time::SystemTime::now()),
            Some(watchdog),
        );
        // An idle core wakes up for its pings.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let got = pings.lock().expect("lock").clone();
        let offsets: Vec<Duration> = got.iter().map(|(_, at)| *at - start).collect();
        assert_eq!(
            offsets,
            [0, 1, 2, 3].map(Duration::from_secs),
            "one ping per interval"
        );
        // Sent by the core's own task: if that task stops turning, so do they.
        assert!(got.iter().all(|(id, _)| *id == Some(task.id())));
        // When the core ends, the pings end.
        drop(handle);
        task.await.expect("core ends when every sender is gone");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(pings.lock().expect("lock").len(), 4);
    }
}
