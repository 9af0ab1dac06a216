//! `tessera selftest`: every op on every device kind, against the CPU.

use super::{CliResult, CommonArgs, SelftestArgs};
use tessera::selftest::{selftest, OpCheck};

pub fn run(args: &SelftestArgs) -> CliResult {
    // One runtime per device kind, holding only that kind, so every case
    // runs on it (the CPU would otherwise take some).
    let kinds = match &args.common.devices {
        Some(kinds) => kinds.clone(),
        None => {
            let rt = super::runtime(&args.common, None)?;
            let mut kinds = vec!["cpu".to_string()];
            kinds.extend(rt.plugins().iter().map(|p| p.name.clone()));
            kinds
        }
    };
    let order = usize::try_from(args.order)?;
    let mut all: Vec<(String, OpCheck)> = Vec::new();
    for kind in &kinds {
        let common = CommonArgs {
            devices: Some(vec![kind.clone()]),
            ..args.common.clone()
        };
        let rt = super::runtime(&common, None)?;
        if rt.processors().is_empty() {
            return Err(format!("no `{kind}` processor here (see `tessera info`)").into());
        }
        for check in selftest(&rt, order)? {
            all.push((kind.clone(), check));
        }
        rt.shutdown()?;
    }
    let failed = all.iter().filter(|(_, c)| !c.passed()).count();
    if args.common.json {
        let rows: Vec<_> = all
            .iter()
            .map(|(kind, c)| serde_json::json!({"device": kind, "check": c}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"order": order, "failed": failed, "checks": rows})
        );
    } else {
        println!(
            "{:<8} {:<18} {:<5} {:>10} {:>8}  result",
            "device", "op", "dtype", "error", "limit"
        );
        for (kind, c) in &all {
            let result = match (&c.failure, c.ran()) {
                (Some(why), _) => format!("FAIL: {why}"),
                (None, true) => "ok".to_string(),
                (None, false) => "not offered".to_string(),
            };
            let error = c.error.map_or("-".to_string(), |e| format!("{e:.1e}"));
            println!(
                "{:<8} {:<18} {:<5} {:>10} {:>8.0e}  {}",
                kind, c.case, c.dtype, error, c.tolerance, result
            );
        }
        println!(
            "{} checks, {} failed (tiles {order}×{order})",
            all.iter().filter(|(_, c)| c.ran()).count(),
            failed
        );
    }
    if failed > 0 {
        return Err(format!("{failed} selftest checks failed").into());
    }
    Ok(())
}
