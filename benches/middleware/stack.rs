use criterion::Criterion;

use crate::support::Report;

pub fn benches(_c: &mut Criterion, _report: &mut Report) {}
