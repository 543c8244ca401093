//! `deltawkv convert`.

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {}

pub fn run(_args: ConvertArgs) -> anyhow::Result<()> {
    anyhow::bail!("`deltawkv convert` is not available yet")
}
