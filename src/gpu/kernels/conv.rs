//! The 3x3 convolution (`shaders/network/conv3x3.wgsl`): its arguments, parameter block and
//! launch.

use crate::engine::EngineError;
use crate::gpu::graph::{BufId, Graph, View};

use super::{KernelKey, Kind, grid_1d};

/// 3x3 convolution (see `shaders/network/conv3x3.wgsl`). Images are NHWC.
#[derive(Clone, Copy, Debug)]
pub struct ConvArgs {
    pub src: View,
    pub weights: BufId,
    /// Offset of the packed weights `[9][c_in][c_out]`.
    pub w_off: u32,
    /// Offset of the bias `[c_out]`.
    pub b_off: u32,
    pub dst: View,
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub cin: u32,
    pub cout: u32,
    /// Add the previous destination value (residual connection).
    pub accumulate: bool,
    /// LeakyReLU slope applied last.
    pub leaky: Option<f32>,
    /// Write through PixelShuffle(2): the destination is `2H x 2W x c_out/4`.
    pub shuffle: bool,
}

wgsl_params! {
    /// The parameter block of `conv3x3.wgsl` (its `struct Params`).
    ConvParams {
        batch: u32,
        height: u32,
        width: u32,
        cin: u32,
        cout: u32,
        in_off: u32,
        w_off: u32,
        b_off: u32,
        out_off: u32,
        tiles_x: u32,
        tiles_y: u32,
        co_tiles: u32,
        slope: f32,
    }
}

impl Graph {
    /// Appends a 3x3 convolution.
    pub fn conv3x3(&mut self, a: &ConvArgs) -> Result<(), EngineError> {
        let (tw, th) = (8u32, 8u32);
        let ci_t = a.cin.clamp(1, 8);
        let (co_t, px_pt, co_pt) = if a.cout <= 4 {
            (4u32, 1u32, 4u32)
        } else {
            (32, 4, 4)
        };
        let npg = tw * th / px_pt;
        let ncg = co_t / co_pt;
        let key = KernelKey {
            kind: Kind::Conv3x3,
            consts: vec![
                ("TW", tw),
                ("TH", th),
                ("CI_T", ci_t),
                ("CO_T", co_t),
                ("PX_PT", px_pt),
                ("CO_PT", co_pt),
                ("NPG", npg),
                ("NCG", ncg),
                ("WG", npg * ncg),
                ("IN_TILE", (th + 2) * (tw + 2) * ci_t),
                ("W_TILE", 9 * ci_t * co_t),
                ("ACC", px_pt * co_pt),
                ("ACCUM", a.accumulate as u32),
                ("LEAKY", a.leaky.is_some() as u32),
                ("SHUFFLE", a.shuffle as u32),
            ],
        };
        if a.shuffle && !a.cout.is_multiple_of(4) {
            return Err(EngineError::Internal(format!(
                "pixel shuffle needs a multiple of 4 channels, got {}",
                a.cout
            )));
        }
        let tiles_x = a.width.div_ceil(tw);
        let tiles_y = a.height.div_ceil(th);
        let co_tiles = a.cout.div_ceil(co_t);
        let params = ConvParams {
            batch: a.batch,
            height: a.height,
            width: a.width,
            cin: a.cin,
            cout: a.cout,
            in_off: a.src.off,
            w_off: a.w_off,
            b_off: a.b_off,
            out_off: a.dst.off,
            tiles_x,
            tiles_y,
            co_tiles,
            slope: a.leaky.unwrap_or(0.0),
        };
        let [gx, gy] = grid_1d(tiles_x * tiles_y, self.max_groups());
        let gz = a.batch * co_tiles;
        let px = u64::from(a.batch) * u64::from(a.height) * u64::from(a.width);
        let (cin, cout) = (u64::from(a.cin), u64::from(a.cout));
        self.count_traffic(
            px * cin + 9 * cin * cout + cout + px * cout * (1 + a.accumulate as u64),
        );
        self.dispatch(
            key,
            vec![a.src.buf, a.weights, a.dst.buf],
            &params,
            [gx, gy, gz],
        )
    }
}
