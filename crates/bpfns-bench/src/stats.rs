//! Medians, quantiles and ratios.

use serde::Serialize;

/// `q`-quantile (0..=1) of sorted data, by linear interpolation between closest ranks.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

pub fn quantile(data: &[f64], q: f64) -> f64 {
    let mut v = data.to_vec();
    v.sort_by(f64::total_cmp);
    quantile_sorted(&v, q)
}

pub fn median(data: &[f64]) -> f64 {
    quantile(data, 0.5)
}

/// Median and 90th percentile of per-operation times.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub p25_ns: f64,
    pub median_ns: f64,
    pub p90_ns: f64,
    pub samples: usize,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Self {
            p25_ns: quantile_sorted(&v, 0.25),
            median_ns: quantile_sorted(&v, 0.5),
            p90_ns: quantile_sorted(&v, 0.9),
            samples: v.len(),
        }
    }
}

/// Baseline against subject, from samples gathered in interleaved rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: Summary,
    pub subject: Summary,
    /// Median of all subject samples over median of all baseline samples.
    pub ratio: f64,
    /// The same for the 25th percentiles: steadier than the median when the per-operation
    /// times are bimodal (on a shared machine map creation runs at about 6 or 12 µs depending on
    /// what the other CPU does, and the median then sits between the two modes).
    pub ratio_p25: f64,
    /// The same ratio within each of up to [`BLOCKS`] blocks of consecutive rounds: its lowest
    /// and highest value, i.e. how far it moves over the run.
    pub block_ratio_min: f64,
    pub block_ratio_max: f64,
    pub rounds: usize,
}

/// Blocks of rounds for [`Comparison::block_ratio_min`]/`max`.
pub const BLOCKS: usize = 10;

impl Comparison {
    /// `baseline[r]` and `subject[r]` are the samples of round `r`.
    pub fn new(baseline: &[Vec<f64>], subject: &[Vec<f64>]) -> Self {
        let all = |rs: &[Vec<f64>]| rs.iter().flatten().copied().collect::<Vec<f64>>();
        let b = Summary::of(&all(baseline));
        let s = Summary::of(&all(subject));
        let rounds = baseline.len().min(subject.len());
        let per_block = rounds.div_ceil(BLOCKS).max(1);
        let blocks: Vec<f64> = (0..rounds)
            .step_by(per_block)
            .map(|start| {
                let end = (start + per_block).min(rounds);
                median(&all(&subject[start..end])) / median(&all(&baseline[start..end]))
            })
            .collect();
        Self {
            ratio: s.median_ns / b.median_ns,
            ratio_p25: s.p25_ns / b.p25_ns,
            block_ratio_min: blocks.iter().copied().fold(f64::NAN, f64::min),
            block_ratio_max: blocks.iter().copied().fold(f64::NAN, f64::max),
            rounds,
            baseline: b,
            subject: s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(median(&v), 3.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert!((quantile(&[1.0, 2.0], 0.5) - 1.5).abs() < 1e-9);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn comparison() {
        let b = vec![vec![10.0, 10.0, 10.0], vec![20.0, 20.0, 20.0]];
        let s = vec![vec![11.0, 11.0, 11.0], vec![22.0, 22.0, 22.0]];
        let c = Comparison::new(&b, &s);
        assert_eq!(c.rounds, 2);
        assert!((c.block_ratio_min - 1.1).abs() < 1e-9);
        assert!((c.block_ratio_max - 1.1).abs() < 1e-9);
        assert_eq!(c.baseline.samples, 6);
    }
}
