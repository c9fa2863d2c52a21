//! The printed figures and the targets.

#![allow(
    clippy::cast_precision_loss,
    reason = "counts and sizes far below 2^52, printed as ratios"
)]

use std::{fmt::Write as _, time::Duration};

use super::{
    measure::{VERBS, is_write},
    run::{Operator, Outcome},
};

/// Every run at one N.
pub(crate) struct Sized {
    pub(crate) ours: Outcome,
    pub(crate) oracle: Outcome,
    pub(crate) naive: Outcome,
    pub(crate) ours_faulted: Outcome,
    pub(crate) ours_flaky_health: Option<Outcome>,
    pub(crate) naive_faulted: Option<Outcome>,
}

/// Which targets were missed.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Writes in steady state: a count that does not depend on the machine.
    pub(crate) writes_missed: bool,
    /// The request ratio, linear growth, the error-rate slowdown: all depend on timing
    /// (how often an operator polls while it waits depends on how fast things go).
    pub(crate) others_missed: bool,
}

fn secs(o: &Outcome) -> String {
    match o.converged {
        Some(t) => format!("{:.2} s", t.as_secs_f64()),
        None => format!("NOT converged ({}/{} Ready)", o.ready, o.n),
    }
}

fn kib(bytes: usize, n: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0 / n as f64)
}

/// One line as each run ends.
pub(crate) fn progress(o: &Outcome) {
    println!(
        "convergence: N={} {:<14} errors {:>3.0}%, failed health checks {:>3.0}%: {}, {} API requests ({} writes), {} DBaaS calls ({} refused with 429), {} faults fired",
        o.n,
        o.operator.name(),
        o.error_rate * 100.0,
        o.health_failure_rate * 100.0,
        secs(o),
        o.requests.total(),
        o.requests.writes(),
        o.dbaas_calls,
        o.dbaas_throttled,
        o.faults_fired,
    );
}

/// Prints the tables and the targets; returns which targets were missed.
pub(crate) fn print(results: &[Sized], error_rate: f64) -> Verdict {
    for sized in results {
        print_sized(sized, error_rate);
    }
    targets(results, error_rate)
}

/// A row of two figures and their ratio.
fn row(what: &str, ours: f64, naive: f64) {
    let ratio = if ours > 0.0 {
        format!("{:.1}x", naive / ours)
    } else if naive > 0.0 {
        "inf".to_owned()
    } else {
        "-".to_owned()
    };
    println!("{what:<34} {ours:>16.2} {naive:>16.2} {ratio:>10}");
}

/// A row of two texts.
fn text_row(what: &str, ours: &str, naive: &str) {
    println!("{what:<34} {ours:>16} {naive:>16}");
}

fn print_sized(sized: &Sized, error_rate: f64) {
    let (ours, naive) = (&sized.ours, &sized.naive);
    println!(
        "\n== convergence, N = {}: creation to Ready, {} vs {} (same run) ==",
        ours.n,
        Operator::Ours.name(),
        Operator::Naive.name()
    );
    println!(
        "{:<34} {:>16} {:>16} {:>10}",
        "", "ours", "naive", "naive/ours"
    );
    text_row("time to Ready (wall)", &secs(ours), &secs(naive));
    let percentile = |o: &Outcome, percent| {
        o.percentile(percent)
            .map_or_else(|| "-".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()))
    };
    for (what, percent) in [
        ("  first Ready", 0),
        ("  half Ready", 50),
        ("  99% Ready", 99),
    ] {
        text_row(
            what,
            &percentile(ours, percent),
            &percentile(naive, percent),
        );
    }
    print_costs(ours, naive);
    print_oracle(ours, &sized.oracle);
    let pct = error_rate * 100.0;
    let faulted = |o: &Outcome, clean: &Outcome| match (o.converged, clean.converged) {
        (Some(t), Some(c)) => format!(
            "{:.2} s ({:.2}x), {:.2} req/object",
            t.as_secs_f64(),
            t.as_secs_f64() / c.as_secs_f64(),
            o.per_object(o.requests.total())
        ),
        _ => secs(o),
    };
    println!(
        "with {pct:.0}% API errors, ours:  {}",
        faulted(&sized.ours_faulted, ours)
    );
    if let Some(naive_faulted) = &sized.naive_faulted {
        println!(
            "with {pct:.0}% API errors, naive: {}",
            faulted(naive_faulted, naive)
        );
    }
    if let Some(flaky) = &sized.ours_flaky_health {
        println!(
            "with {:.0}% failed DBaaS health checks, ours: {}",
            flaky.health_failure_rate * 100.0,
            faulted(flaky, ours)
        );
    }
    if std::env::var_os("KUBE_RECONCILE_BENCH_VERBOSE").is_some() {
        println!("ours, requests by verb and resource:\n{}", ours.requests);
        println!("naive, requests by verb and resource:\n{}", naive.requests);
        if let (Some(o), Some(p)) = (&ours.steady, &naive.steady) {
            println!("ours, steady state:\n{}", o.requests);
            println!("naive, steady state:\n{}", p.requests);
        }
    }
}

/// Requests, writes, DBaaS calls and heap, per object.
fn print_costs(ours: &Outcome, naive: &Outcome) {
    row(
        "API requests / object",
        ours.per_object(ours.requests.total()),
        naive.per_object(naive.requests.total()),
    );
    for verb in VERBS {
        let (o, p) = (ours.requests.verb(verb), naive.requests.verb(verb));
        if o + p > 0 {
            let marker = if is_write(verb) { " (write)" } else { "" };
            row(
                &format!("  {verb}{marker}"),
                ours.per_object(o),
                naive.per_object(p),
            );
        }
    }
    if let (Some(o), Some(p)) = (&ours.steady, &naive.steady) {
        row(
            "writes / steady-state reconcile",
            o.writes_per_reconcile(),
            p.writes_per_reconcile(),
        );
        text_row(
            "  (reconciles counted)",
            &o.reconciles.to_string(),
            &p.reconciles.to_string(),
        );
    } else {
        text_row("writes / steady-state reconcile", "not measured", "");
    }
    row(
        "DBaaS calls / object",
        ours.per_object(ours.dbaas_calls),
        naive.per_object(naive.dbaas_calls),
    );
    row(
        "  refused with 429",
        ours.per_object(ours.dbaas_throttled),
        naive.per_object(naive.dbaas_throttled),
    );
    text_row(
        "operator heap growth / object (peak)",
        &kib(ours.peak_heap, ours.n),
        &kib(naive.peak_heap, naive.n),
    );
    text_row(
        "operator heap / object (at Ready)",
        &kib(ours.operator_heap, ours.n),
        &kib(naive.operator_heap, naive.n),
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// The oracle beside ours: what the adaptive budget costs against a fixed budget set to
/// the DBaaS's true limit.
fn print_oracle(ours: &Outcome, oracle: &Outcome) {
    let at = |o: &Outcome, percent| {
        o.percentile(percent)
            .map_or_else(|| "-".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()))
    };
    println!(
        "\n{:<34} {:>16} {:>16} {:>10}",
        "", "ours (adaptive)", "oracle (fixed)", "ours/oracle"
    );
    let ratio = match (ours.converged, oracle.converged) {
        (Some(a), Some(b)) => format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".to_owned(),
    };
    println!(
        "{:<34} {:>16} {:>16} {ratio:>10}",
        "time to Ready (wall)",
        secs(ours),
        secs(oracle)
    );
    for (what, percent) in [
        ("  first Ready", 0),
        ("  half Ready", 50),
        ("  99% Ready", 99),
    ] {
        text_row(what, &at(ours, percent), &at(oracle, percent));
    }
    text_row(
        "DBaaS calls (429s)",
        &format!("{} ({})", ours.dbaas_calls, ours.dbaas_throttled),
        &format!("{} ({})", oracle.dbaas_calls, oracle.dbaas_throttled),
    );
}

/// The adaptive budget: close to a budget that knew the DBaaS's limit, few 429s.
/// Returns whether it was met.
fn adaptive_target(results: &[Sized]) -> bool {
    let mut detail = String::new();
    let mut ok = true;
    for s in results {
        if let (Some(a), Some(b)) = (s.ours.converged, s.oracle.converged) {
            let ratio = a.as_secs_f64() / b.as_secs_f64();
            let refused = s.ours.dbaas_throttled as f64 / s.ours.dbaas_calls.max(1) as f64;
            ok &= ratio <= 1.15 && refused <= 0.01;
            let _ = write!(
                detail,
                " N={}: {ratio:.2}x the oracle's time, {:.2}% of DBaaS calls refused;",
                s.ours.n,
                refused * 100.0
            );
        } else {
            ok = false;
            let _ = write!(detail, " N={}: not converged;", s.ours.n);
        }
    }
    println!(
        "{} adaptive budget within 1.15x the oracle's time, <= 1% of DBaaS calls refused:{detail}",
        verdict(ok)
    );
    ok
}

fn targets(results: &[Sized], error_rate: f64) -> Verdict {
    let mut v = Verdict::default();
    println!("\n== convergence targets ==");

    v.others_missed |= !adaptive_target(results);

    // Zero writes in steady state.
    let mut detail = String::new();
    let mut ok = true;
    for s in results {
        if let Some(steady) = &s.ours.steady {
            let (writes, reconciles) = (steady.requests.writes(), steady.reconciles);
            ok &= writes == 0;
            let _ = write!(
                detail,
                " N={}: {writes} writes in {reconciles} reconciles;",
                s.ours.n
            );
        } else {
            ok = false;
            let _ = write!(detail, " N={}: not measured (no convergence);", s.ours.n);
        }
    }
    v.writes_missed |= !ok;
    println!("{} zero writes in steady state:{detail}", verdict(ok));

    // At least 2x fewer API requests per converged object.
    let mut detail = String::new();
    let mut ok = true;
    for s in results {
        let (o, p) = (s.ours.requests.total(), s.naive.requests.total());
        let converged = s.ours.converged.is_some() && s.naive.converged.is_some();
        let ratio = p as f64 / o.max(1) as f64;
        ok &= converged && ratio >= 2.0;
        let _ = write!(
            detail,
            " N={}: {:.2} vs {:.2} per object, {ratio:.2}x;",
            s.ours.n,
            s.ours.per_object(o),
            s.naive.per_object(p)
        );
    }
    v.others_missed |= !ok;
    println!(
        "{} >= 2x fewer API requests per converged object than naive:{detail}",
        verdict(ok)
    );

    // Linear growth: each step up in N costs no more time than N grew, plus 25%.
    let mut detail = String::new();
    let mut ok = true;
    for pair in results.windows(2) {
        let (a, b) = (&pair[0].ours, &pair[1].ours);
        match (a.converged, b.converged) {
            (Some(ta), Some(tb)) => {
                let grew = b.n as f64 / a.n as f64;
                let took = tb.as_secs_f64() / ta.as_secs_f64();
                ok &= took <= grew * 1.25;
                let _ = write!(
                    detail,
                    " N {}->{}: {grew:.0}x objects, {took:.2}x time;",
                    a.n, b.n
                );
            }
            _ => ok = false,
        }
    }
    if results.len() < 2 {
        detail.push_str(" (needs two sizes)");
    }
    v.others_missed |= !ok;
    println!(
        "{} time to converge grows no worse than linearly (<= 1.25x the growth in N):{detail}",
        verdict(ok)
    );

    v.others_missed |= !in_order(results);
    v.others_missed |= !requests_per_object(results);
    v.others_missed |= !lean_memory(results);

    // Faults: at most 1.3x the fault-free time, for API errors and a flaky health endpoint.
    v.others_missed |= !slowdown(
        results,
        |s| Some(&s.ours_faulted),
        1.3,
        &format!(
            "with {:.0}% API errors, converged within 1.3x the fault-free time",
            error_rate * 100.0
        ),
    );
    let flaky = results
        .iter()
        .find_map(|s| s.ours_flaky_health.as_ref())
        .map_or(0.0, |o| o.health_failure_rate);
    v.others_missed |= !slowdown(
        results,
        |s| s.ours_flaky_health.as_ref(),
        1.3,
        &format!(
            "with {:.0}% of DBaaS health checks failing, converged within 1.3x the healthy time",
            flaky * 100.0
        ),
    );
    v
}

/// Objects finished in order: the first Ready within 3 s, the median at most 0.6x the last.
fn in_order(results: &[Sized]) -> bool {
    let mut detail = String::new();
    let mut ok = true;
    for s in results {
        let o = &s.ours;
        if let (Some(first), Some(median), Some(last)) =
            (o.percentile(0), o.percentile(50), o.converged)
        {
            let share = median.as_secs_f64() / last.as_secs_f64();
            ok &= first <= Duration::from_secs(3) && share <= 0.6;
            let _ = write!(
                detail,
                " N={}: first {:.2} s, median {share:.2}x the last;",
                o.n,
                first.as_secs_f64()
            );
        } else {
            ok = false;
            let _ = write!(detail, " N={}: did not converge;", o.n);
        }
    }
    println!(
        "{} objects finish in order (first Ready within 3 s, median at most 0.6x the last):{detail}",
        verdict(ok)
    );
    ok
}

/// At most 22 API requests per converged object.
fn requests_per_object(results: &[Sized]) -> bool {
    let mut detail = String::new();
    let mut ok = true;
    for s in results {
        let per = s.ours.per_object(s.ours.requests.total());
        ok &= s.ours.converged.is_some() && per <= 22.0;
        let _ = write!(detail, " N={}: {per:.2};", s.ours.n);
    }
    println!(
        "{} at most 22 API requests per converged object:{detail}",
        verdict(ok)
    );
    ok
}

/// At most 6 KiB of operator heap per object at Ready, and a peak at most twice that.
fn lean_memory(results: &[Sized]) -> bool {
    let mut detail = String::new();
    let mut ok = true;
    for s in results {
        let o = &s.ours;
        let (ready, peak) = (
            o.operator_heap as f64 / 1024.0 / o.n as f64,
            o.peak_heap as f64 / 1024.0 / o.n as f64,
        );
        ok &= ready <= 6.0 && peak <= 12.0;
        let _ = write!(
            detail,
            " N={}: {ready:.1} KiB at Ready, {peak:.1} KiB at the peak, {:.1}x (naive: {}, {});",
            o.n,
            peak / ready.max(f64::MIN_POSITIVE),
            kib(s.naive.operator_heap, s.naive.n),
            kib(s.naive.peak_heap, s.naive.n),
        );
    }
    println!(
        "{} operator heap at most 6 KiB per object at Ready, its peak at most twice that (12 KiB):{detail}",
        verdict(ok)
    );
    ok
}

/// Prints whether each size's `pick` run converged within `limit` times the clean run;
/// returns whether all that ran did.
fn slowdown(
    results: &[Sized],
    pick: fn(&Sized) -> Option<&Outcome>,
    limit: f64,
    what: &str,
) -> bool {
    let mut detail = String::new();
    let mut ok = true;
    for s in results {
        let Some(picked) = pick(s) else {
            let _ = write!(detail, " N={}: not run;", s.ours.n);
            continue;
        };
        if let (Some(f), Some(c)) = (picked.converged, s.ours.converged) {
            let ratio = f.as_secs_f64() / c.as_secs_f64();
            ok &= ratio <= limit;
            let _ = write!(
                detail,
                " N={}: {:.2} s vs {:.2} s, {ratio:.2}x;",
                s.ours.n,
                f.as_secs_f64(),
                c.as_secs_f64()
            );
        } else {
            ok = false;
            let _ = write!(detail, " N={}: did not converge;", s.ours.n);
        }
    }
    println!("{} {what}:{detail}", verdict(ok));
    ok
}
