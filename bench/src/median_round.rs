//! Several rounds of a noisy measurement, summarised by the round whose figure is the median.
//!
//! One short run per system makes a verdict against a target a coin toss when the figure
//! sits near its line: two runs minutes apart gave 40,723 and 37,557 writes/s. The harnesses
//! therefore run such figures in rounds (systems alternating within a round) and report the
//! median round whole (its latencies, its errors), with every round's figure beside it.

/// The run among `runs` whose `figure` is the median (the lower of the two middle ones for
/// an even count, so the chosen run is one that happened), and every round's figure in the
/// order run; `None` when there is no run.
pub fn median_round<T>(mut runs: Vec<T>, figure: impl Fn(&T) -> f64) -> Option<(T, Vec<f64>)> {
    let figures: Vec<f64> = runs.iter().map(figure).collect();
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|a, b| figures[*a].total_cmp(&figures[*b]));
    let middle = *order.get(order.len().saturating_sub(1) / 2)?;
    Some((runs.swap_remove(middle), figures))
}

/// "a / b / c" of every round's figure, with `decimals` decimals, for a report.
pub fn rounds_text(figures: &[f64], decimals: usize) -> String {
    figures
        .iter()
        .map(|figure| format!("{figure:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_odd_count_gives_the_middle_run_whole() {
        let runs = vec![("a", 30.0), ("b", 10.0), ("c", 20.0)];
        let (run, figures) = median_round(runs, |run| run.1).unwrap();
        assert_eq!(run, ("c", 20.0));
        assert_eq!(figures, vec![30.0, 10.0, 20.0]);
    }

    #[test]
    fn an_even_count_gives_the_lower_middle_run() {
        let runs = vec![4.0, 1.0, 3.0, 2.0];
        let (run, _) = median_round(runs, |run| *run).unwrap();
        assert_eq!(run, 2.0);
    }

    #[test]
    fn no_run_gives_none_and_one_run_gives_itself() {
        assert!(median_round(Vec::<f64>::new(), |run| *run).is_none());
        assert_eq!(median_round(vec![7.0], |run| *run).unwrap().0, 7.0);
    }

    #[test]
    fn rounds_are_listed_in_the_order_run() {
        assert_eq!(rounds_text(&[1.234, 5.0], 1), "1.2 / 5.0");
        assert_eq!(rounds_text(&[], 0), "");
    }
}
