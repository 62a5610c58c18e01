//! `bpfns doctor`: the kernel feature report.

use anyhow::Result;
use bpfns_kernel::doctor::{self, Report};

use crate::output::{emit, Format, Render};

impl Render for Report {
    fn render_text(&self) -> String {
        Report::render_text(self)
    }
}

/// Probe, print, and return the exit status: 0 when every required feature is present.
pub fn run(format: Format) -> Result<u8> {
    let report = doctor::run();
    emit(format, &report)?;
    Ok(if report.all_required_ok() { 0 } else { 1 })
}
