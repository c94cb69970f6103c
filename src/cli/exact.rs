//! `ebmc logz --exact`: the enumeration oracle from the command line.

use super::compile::compile;
use super::{CliError, CliResult, ModelArgs};
use crate::exact::Joint;
use crate::ir::Domain;

pub fn logz(args: &ModelArgs, exact: bool, marginals: bool, seed: u64) -> CliResult {
    if !exact {
        return Err(CliError::new(
            "only `--exact` is available here; AIS estimates come from `ebmc run` with an evaluate block",
        ));
    }
    let c = compile(args)?;
    let params = c.model.init_params(seed, None);
    if c.model.groups.iter().any(|g| g.domain == Domain::Real) {
        // real groups are integrated in closed form for every discrete state
        let lz = crate::exact::likelihood::log_z(&c.model, &params)?;
        if marginals {
            return Err(CliError::new("`--marginals` needs a fully discrete model"));
        }
        println!("log Z = {lz:.10}  (discrete states enumerated, real groups integrated; parameter seed {seed})");
        return Ok(());
    }
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
