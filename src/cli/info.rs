//! `deltawkv info`.

#[derive(clap::Args, Debug)]
pub struct InfoArgs {}

pub fn run(_args: InfoArgs) -> anyhow::Result<()> {
    anyhow::bail!("`deltawkv info` is not available yet")
}
