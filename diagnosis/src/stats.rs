//! Skew statistics (max/mean, Jain's fairness index, median) computed so that the order of the nodes
//! cannot change a single bit of the result.
//!
//! Floating-point addition is not associative: summing the same values in another order can change
//! the last bit, and a value sitting on a threshold could then flip a verdict when nodes are merely
//! listed in another order. Every sum over nodes therefore adds the values in ascending order.

/// Sum of `values` in ascending order: independent of the input order.
pub fn ordered_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    sorted.sort_by(f64::total_cmp);
    // Fold from +0.0: `Sum` for floats starts at -0.0, which prints as "-0" for an empty sum.
    sorted.iter().fold(0.0, |acc, x| acc + x)
}

/// Median; `None` for no values. The mean of the two middle values for an even count.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

/// Median of an ascending slice with the element at `skip` left out (a node's peers without itself),
/// without copying: the caller sorts once for every node.
pub fn median_of_sorted_without(sorted: &[f64], skip: Option<usize>) -> Option<f64> {
    let skip = skip.filter(|&s| s < sorted.len());
    let len = sorted.len() - usize::from(skip.is_some());
    if len == 0 {
        return None;
    }
    let at = |k: usize| sorted[k + usize::from(skip.is_some_and(|s| k >= s))];
    let mid = len / 2;
    Some(if len % 2 == 1 { at(mid) } else { (at(mid - 1) + at(mid)) / 2.0 })
}

/// Max/mean "imbalance factor" (Kafka Cruise Control): 1 when all equal; `None` when the mean is 0.
pub fn max_over_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mean = ordered_sum(values.iter().copied()) / values.len() as f64;
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean > 0.0).then(|| max / mean)
}

/// Jain's fairness index J = (sum x)^2 / (n * sum x^2), in [1/n, 1]: 1 when all equal, 1/n when one
/// takes everything (R. Jain, D. Chiu, W. Hawe, DEC-TR-301, 1984). `None` when all are zero.
pub fn jain_index(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum = ordered_sum(values.iter().copied());
    let sum_sq = ordered_sum(values.iter().map(|x| x * x));
    (sum_sq > 0.0).then(|| sum * sum / (values.len() as f64 * sum_sq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_equal_and_one_over_n_when_one_takes_all() {
        assert_eq!(jain_index(&[2.0, 2.0, 2.0]), Some(1.0));
        let one_takes_all = jain_index(&[3.0, 0.0, 0.0]).expect("nonzero");
        assert!((one_takes_all - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(jain_index(&[0.0, 0.0]), None);
    }

    #[test]
    fn max_over_mean_of_a_typical_spread() {
        // 20/17/13 connections over 3 pods: max/mean = 20 / (50/3) = 1.2.
        let r = max_over_mean(&[20.0, 17.0, 13.0]).expect("nonzero");
        assert!((r - 1.2).abs() < 1e-12);
    }

    #[test]
    fn sums_do_not_depend_on_order() {
        let a = [0.1, 1e16, -1e16, 0.2, 0.3];
        let b = [0.3, -1e16, 0.2, 1e16, 0.1];
        assert_eq!(ordered_sum(a).to_bits(), ordered_sum(b).to_bits());
    }

    #[test]
    fn median_without_one_element_matches_a_copy() {
        let sorted = [1.0, 2.0, 4.0, 8.0, 16.0];
        for skip in 0..sorted.len() {
            let copy: Vec<f64> = sorted.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, v)| *v).collect();
            assert_eq!(median_of_sorted_without(&sorted, Some(skip)), median(copy));
        }
        assert_eq!(median_of_sorted_without(&sorted, None), Some(4.0));
        assert_eq!(median_of_sorted_without(&[3.0], Some(0)), None);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }
}
