//! `deltawkv eval`.

#[derive(clap::Args, Debug)]
pub struct EvalArgs {}

pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`deltawkv eval` is not available yet")
}
