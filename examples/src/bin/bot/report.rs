//! What a successful `bot demo` measured, and how it is printed: a summary in milliseconds
//! and the verdict line.

use std::time::{Duration, Instant};

// Writing to a String cannot fail, so the `fmt::Result`s below are ignored.

/// One graceful stop, as measured.
pub struct Leave {
    /// The node stopped.
    pub node: String,
    /// When it was sent SIGTERM.
    pub signalled_at: Instant,
    /// When it exited (closed its stdout).
    pub exited_at: Instant,
    /// When each node still running reported it LEFT.
    pub seen_left: Vec<(String, Instant)>,
}

/// Everything measured by a successful run.
pub struct Report {
    /// When every node saw the two others ACTIVE.
    pub formed_at: Instant,
    /// The node killed and restarted.
    pub victim: String,
    /// When it was killed.
    pub killed_at: Instant,
    /// When each survivor reported it UNREACHABLE.
    pub detections: Vec<(String, Instant)>,
    /// When it was started again.
    pub restarted_at: Instant,
    /// When each side of the rejoin was seen: a description, and the time.
    pub rejoins: Vec<(String, Instant)>,
    /// The graceful stops, in order.
    pub leaves: Vec<Leave>,
}

impl Report {
    /// The summary, with times since `origin`, ending with the verdict line.
    pub fn render(&self, origin: Instant) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let at = |instant: Instant| millis(instant.saturating_duration_since(origin));
        let after =
            |instant: Instant, start: Instant| millis(instant.saturating_duration_since(start));
        out.push('\n');
        let _ = writeln!(out, "summary (ms since demo start):");
        let _ = writeln!(
            out,
            "  {:>7}  cluster formed: every node sees the other two ACTIVE",
            at(self.formed_at)
        );
        let _ = writeln!(out, "  {:>7}  kill -9 {}", at(self.killed_at), self.victim);
        for (survivor, detected_at) in &self.detections {
            let _ = writeln!(
                out,
                "  {:>7}  {survivor} reports {} UNREACHABLE, {} ms after the kill",
                at(*detected_at),
                self.victim,
                after(*detected_at, self.killed_at)
            );
        }
        let _ = writeln!(
            out,
            "  {:>7}  {} restarted from the same data dir and port",
            at(self.restarted_at),
            self.victim
        );
        for (observer, rejoined_at) in &self.rejoins {
            let _ = writeln!(
                out,
                "  {:>7}  {observer}, {} ms after the restart",
                at(*rejoined_at),
                after(*rejoined_at, self.restarted_at)
            );
        }
        for leave in &self.leaves {
            let seen: Vec<String> = leave
                .seen_left
                .iter()
                .map(|(observer, seen_at)| {
                    format!(
                        "{observer} saw it LEFT after {} ms",
                        after(*seen_at, leave.signalled_at)
                    )
                })
                .collect();
            let seen = if seen.is_empty() {
                String::from("no node left to see it")
            } else {
                seen.join(", ")
            };
            let _ = writeln!(
                out,
                "  {:>7}  SIGTERM {}: exited 0 after {} ms; {seen}",
                at(leave.signalled_at),
                leave.node,
                after(leave.exited_at, leave.signalled_at)
            );
        }
        let detection_max = self
            .detections
            .iter()
            .map(|(_, detected_at)| after(*detected_at, self.killed_at))
            .max()
            .unwrap_or(0);
        let rejoin = self
            .rejoins
            .iter()
            .map(|(_, rejoined_at)| after(*rejoined_at, self.restarted_at))
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "verdict: OK — every survivor detected the crash in {detection_max} ms (max), the \
             restarted node rejoined in {rejoin} ms, and every node left gracefully"
        );
        out
    }
}

fn millis(duration: Duration) -> u128 {
    duration.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_reports_the_slowest_detection_and_rejoin() {
        let origin = Instant::now();
        let at = |milliseconds: u64| origin + Duration::from_millis(milliseconds);
        let report = Report {
            formed_at: at(100),
            victim: "n1".into(),
            killed_at: at(200),
            detections: vec![("n2".into(), at(2_700)), ("n3".into(), at(3_200))],
            restarted_at: at(3_300),
            rejoins: vec![
                ("n2 sees n1".into(), at(3_310)),
                ("n1 sees all".into(), at(3_350)),
            ],
            leaves: vec![Leave {
                node: "n3".into(),
                signalled_at: at(3_400),
                exited_at: at(3_405),
                seen_left: vec![("n2".into(), at(3_402))],
            }],
        };
        let text = report.render(origin);
        let verdict = text.lines().last().unwrap_or_default();
        assert!(verdict.starts_with("verdict: OK"), "{text}");
        assert!(verdict.contains("crash in 3000 ms (max)"), "{text}");
        assert!(verdict.contains("rejoined in 50 ms"), "{text}");
        assert!(text.contains("n2 saw it LEFT after 2 ms"), "{text}");
    }
}
