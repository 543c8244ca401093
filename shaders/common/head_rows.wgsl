// The layout of the per-(token, head) kernels (att_prep.wgsl, combine.wgsl): one row of N threads
// per (token, head) pair, ROWS rows per workgroup, a 1-D launch. Their parameter blocks start
// with pairs (tokens x heads), c (channels), heads.

// One thread's place.
struct HeadRow {
    // channel within the head (the thread's lane in its row)
    lane: u32,
    // row within the workgroup
    row: u32,
    // the row's (token, head) pair exists
    valid: bool,
    // channel
    c: u32,
    // element (token, channel) of an M x C tensor
    e: u32,
}

fn head_row(id: Launch) -> HeadRow {
    let lane = id.li % N;
    let row = id.li / N;
    let pair = linear_group(id.wg, id.nwg) * ROWS + row;
    let tok = pair / P.heads;
    let head = pair % P.heads;
    let c = head * N + lane;
    return HeadRow(lane, row, pair < P.pairs, c, tok * P.c + c);
}
