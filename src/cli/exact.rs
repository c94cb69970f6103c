//! `ebmc logz --exact`: the enumeration oracle from the command line.

use super::compile::compile;
use super::{CliError, CliResult, ModelArgs};
use crate::exact::Joint;

pub fn logz(args: &ModelArgs, exact: bool, marginals: bool, seed: u64) -> CliResult {
    if !exact {
        return Err(CliError::new(
            "only `--exact` is available here; AIS estimates come from `ebmc run` with an evaluate block",
        ));
    }
    let c = compile(args)?;
    let params = c.model.init_params(seed, None);
    let joint = Joint::new(&c.model, &params)?;
    println!(
        "log Z = {:.10}  ({} joint states enumerated, parameter seed {seed})",
        joint.log_z, joint.space.n_states
    );
    if marginals {
        for (g, m) in c.model.groups.iter().zip(joint.marginals()) {
            let shown: Vec<String> = m.iter().map(|x| format!("{x:.6}")).collect();
            println!("E[{}] = [{}]", g.name, shown.join(", "));
        }
    }
    Ok(())
}
