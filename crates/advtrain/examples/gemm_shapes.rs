use gemm::{gemm, Parallelism};
use std::time::Instant;
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}
fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}
/// C[m×n] (dst strides cs, rs) = A (strides) · B (strides)
#[allow(clippy::too_many_arguments)]
fn run(
    label: &str,
    m: usize,
    n: usize,
    k: usize,
    d: (isize, isize),
    a: (isize, isize),
    b: (isize, isize),
    par: Parallelism,
) {
    let av = values(m * k, 1);
    let bv = values(k * n, 2);
    let mut c = vec![0.0f32; m * n];
    let ms = median_ms(15, || unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            d.0,
            d.1,
            false,
            av.as_ptr(),
            a.0,
            a.1,
            bv.as_ptr(),
            b.0,
            b.1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    });
    println!(
        "{label:<40} {ms:>7.2} ms {:>7.1} GFLOP/s",
        2.0 * (m * n * k) as f64 / ms / 1e6
    );
}
fn main() {
    let (bt, din, dout) = (128usize, 3136usize, 1024usize);
    let r = Parallelism::Rayon(0);
    // forward C[bt×dout] = X[bt×din]·W[din×dout]; all row-major (cs, rs)
    run(
        "fwd  C=X·W  (m=bt)",
        bt,
        dout,
        din,
        (1, dout as isize),
        (1, din as isize),
        (1, dout as isize),
        r,
    );
    run(
        "fwd  Ct=Wt·Xt (m=dout)",
        dout,
        bt,
        din,
        (dout as isize, 1),
        (dout as isize, 1),
        (din as isize, 1),
        r,
    );
    // bwd-input GX[bt×din] = G[bt×dout]·Wt[dout×din]  (Wt(i,k)=W[k,i]: cs=dout, rs=1)
    run(
        "bin  GX=G·Wt (m=bt)",
        bt,
        din,
        dout,
        (1, din as isize),
        (1, dout as isize),
        (dout as isize, 1),
        r,
    );
    run(
        "bin  GXt=W·Gt (m=din)",
        din,
        bt,
        dout,
        (din as isize, 1),
        (1, dout as isize),
        (dout as isize, 1),
        r,
    );
    // bwd-weight GW[din×dout] = Xt[din×bt]·G[bt×dout]  (Xt(i,k)=X[k,i]: cs=din, rs=1)
    run(
        "bin  GX=G·Wt (m=bt) 1thr",
        bt,
        din,
        dout,
        (1, din as isize),
        (1, dout as isize),
        (dout as isize, 1),
        Parallelism::None,
    );
    run(
        "bin  GXt=W·Gt (m=din) 1thr",
        din,
        bt,
        dout,
        (din as isize, 1),
        (1, dout as isize),
        (dout as isize, 1),
        Parallelism::None,
    );
    run(
        "bin  GX=G·WtC (contig) 1thr",
        bt,
        din,
        dout,
        (1, din as isize),
        (1, dout as isize),
        (1, din as isize),
        Parallelism::None,
    );
    run(
        "bin  GX=G·WtC (contig)",
        bt,
        din,
        dout,
        (1, din as isize),
        (1, dout as isize),
        (1, din as isize),
        r,
    );
    run(
        "fwd  C=X·W  1thr",
        bt,
        dout,
        din,
        (1, dout as isize),
        (1, din as isize),
        (1, dout as isize),
        Parallelism::None,
    );
    run(
        "bin  GXt=W·GtC (m=din) dstT",
        din,
        bt,
        dout,
        (din as isize, 1),
        (1, dout as isize),
        (1, bt as isize),
        r,
    );
    run(
        "bin  GXt=W·GtC (m=din) dstT 1thr",
        din,
        bt,
        dout,
        (din as isize, 1),
        (1, dout as isize),
        (1, bt as isize),
        Parallelism::None,
    );
    // conv2 of madry per image: co=64, k=800, p=196 (single thread)
    let (co, kk, p) = (64usize, 800usize, 196usize);
    run(
        "conv fwd O=W·col",
        co,
        p,
        kk,
        (1, p as isize),
        (1, kk as isize),
        (1, p as isize),
        Parallelism::None,
    );
    run(
        "conv fwd Ot=colT·WT",
        p,
        co,
        kk,
        (p as isize, 1),
        (kk as isize, 1), /*placeholder*/
        (kk as isize, 1),
        Parallelism::None,
    );
    run(
        "conv bin col=WT·G",
        kk,
        p,
        co,
        (1, p as isize),
        (kk as isize, 1),
        (1, p as isize),
        Parallelism::None,
    );
    run(
        "conv bin colT=GT·W",
        p,
        kk,
        co,
        (1, kk as isize),
        (p as isize, 1),
        (1, kk as isize),
        Parallelism::None,
    );
    run(
        "conv bin col=WT·G (dst colmajor)",
        kk,
        p,
        co,
        (kk as isize, 1),
        (kk as isize, 1),
        (1, p as isize),
        Parallelism::None,
    );
    run(
        "conv fwd O=W·col dst colmajor",
        co,
        p,
        kk,
        (co as isize, 1),
        (1, kk as isize),
        (1, p as isize),
        Parallelism::None,
    );
    run(
        "conv bw dW=G·colT",
        co,
        kk,
        p,
        (1, kk as isize),
        (1, p as isize),
        (p as isize, 1),
        Parallelism::None,
    );
    run(
        "conv bw dWt=col·GT",
        kk,
        co,
        p,
        (co as isize, 1), /*dst T*/
        (1, p as isize),
        (p as isize, 1),
        Parallelism::None,
    );
    run(
        "conv bw dWt=col·GT dst rowmajor",
        kk,
        co,
        p,
        (1, co as isize),
        (1, p as isize),
        (p as isize, 1),
        Parallelism::None,
    );
    run(
        "bw   GW=Xt·G (m=din)",
        din,
        dout,
        bt,
        (1, dout as isize),
        (din as isize, 1),
        (1, dout as isize),
        r,
    );
    run(
        "bw   GWt=Gt·X (m=dout)",
        dout,
        din,
        bt,
        (dout as isize, 1),
        (dout as isize, 1),
        (1, din as isize),
        r,
    );
}
