//! A Prometheus text exposition, read.

/// A Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Scrape(pub String);

impl Scrape {
    /// The value of the series written exactly as `series`
    /// (`name` or `name{label="value"}`), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    /// As [`Scrape::value`], failing the test when the series is missing.
    pub fn get(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.0))
    }
}
