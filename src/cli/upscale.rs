//! `deltawkv upscale`.

#[derive(clap::Args, Debug)]
pub struct UpscaleArgs {}

pub fn run(_args: UpscaleArgs) -> anyhow::Result<()> {
    anyhow::bail!("`deltawkv upscale` is not available yet")
}
