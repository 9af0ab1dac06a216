//! `tessera query` and `tessera trace`: reading run files.

use super::{CliResult, QueryArgs, ReportArgs, TraceArgs};
use tessera::record::RunDb;

pub fn query(args: &QueryArgs) -> CliResult {
    let db = RunDb::open(&args.db)?;
    let result = match (&args.sql, args.top_ops, args.idle, args.transfers) {
        (Some(sql), ..) => db.query(sql)?,
        (None, true, ..) => db.named("top-ops")?,
        (None, _, true, _) => db.named("idle")?,
        (None, _, _, true) => db.named("transfers")?,
        (None, false, false, false) => {
            return Err("give an SQL statement or one of --top-ops, --idle, --transfers".into())
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print!("{}", result.to_table());
    }
    Ok(())
}

pub fn trace(args: &TraceArgs) -> CliResult {
    let db = RunDb::open(&args.db)?;
    let value = tessera::record::trace_events(&db)?;
    let text = serde_json::to_string(&value)?;
    let tmp = args.output.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &args.output))
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

pub fn report(args: &ReportArgs) -> CliResult {
    let db = RunDb::open(&args.db)?;
    let html = tessera::report::render(&db)?;
    let tmp = args.output.with_extension("html.tmp");
    std::fs::write(&tmp, html)
        .and_then(|()| std::fs::rename(&tmp, &args.output))
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
