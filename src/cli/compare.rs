//! `deltawkv compare`.

#[derive(clap::Args, Debug)]
pub struct CompareArgs {}

pub fn run(_args: CompareArgs) -> anyhow::Result<()> {
    anyhow::bail!("`deltawkv compare` is not available yet")
}
