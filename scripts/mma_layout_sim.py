"""Replays the fragment addressing of the mma.sync attention kernels (flash_forward_mma.cu,
flash_backward_mma.cu) under the PTX rules for ldmatrix and mma.m16n8k16 (src/kernels/cuda/mma.cuh)
for every head dim and warp, and checks each product against a NumPy matmul: a check of the index
arithmetic without a GPU (python3 scripts/mma_layout_sim.py). It does not check the PTX rules
themselves; the GPU tests do."""
import numpy as np

rng = np.random.default_rng(0)


def smem(M, ld):
    S = np.zeros((M.shape[0], ld))
    S[:, :M.shape[1]] = M
    return S.reshape(-1)


def ldmatrix(buf, addr_of_lane, trans=False):
    """regs[lane][m] = (lo, hi) for ldmatrix.x4 whose lane i addresses row i % 8 of matrix i // 8."""
    regs = [[None] * 4 for _ in range(32)]
    for m in range(4):
        M = np.array([buf[addr_of_lane(8 * m + r):addr_of_lane(8 * m + r) + 8] for r in range(8)])
        for t in range(32):
            regs[t][m] = (M[2 * (t % 4)][t // 4], M[2 * (t % 4) + 1][t // 4]) if trans else \
                (M[t // 4][2 * (t % 4)], M[t // 4][2 * (t % 4) + 1])
    return regs


def mma(c, a, b0, b1):
    """c[lane] += A B with A from a[lane] (4 pairs), B from b0[lane], b1[lane] (pairs)."""
    A, B = np.zeros((16, 16)), np.zeros((16, 8))
    for t in range(32):
        g, q = t // 4, t % 4
        A[g][2 * q:2 * q + 2], A[g + 8][2 * q:2 * q + 2] = a[t][0], a[t][1]
        A[g][8 + 2 * q:10 + 2 * q], A[g + 8][8 + 2 * q:10 + 2 * q] = a[t][2], a[t][3]
        (B[2 * q][g], B[2 * q + 1][g]), (B[8 + 2 * q][g], B[9 + 2 * q][g]) = b0[t], b1[t]
    C = A @ B
    for t in range(32):
        g, q = t // 4, t % 4
        c[t][0] += C[g][2 * q]
        c[t][1] += C[g][2 * q + 1]
        c[t][2] += C[g + 8][2 * q]
        c[t][3] += C[g + 8][2 * q + 1]


def zeros(n):
    return [[[0.0] * 4 for _ in range(32)] for _ in range(n)]


def to_matrix(acc, rows=16):
    M = np.zeros((rows, 8 * len(acc)))
    for n, frag in enumerate(acc):
        for t in range(32):
            g, q = t // 4, t % 4
            M[g][n * 8 + 2 * q], M[g][n * 8 + 2 * q + 1], M[g + 8][n * 8 + 2 * q], M[g + 8][n * 8 + 2 * q + 1] = frag[t]
    return M


def from_matrix(M, acc):
    for n in range(len(acc)):
        for t in range(32):
            g, q = t // 4, t % 4
            acc[n][t] = [M[g][n * 8 + 2 * q], M[g][n * 8 + 2 * q + 1], M[g + 8][n * 8 + 2 * q], M[g + 8][n * 8 + 2 * q + 1]]


# mma.cuh's four fragment loads: buf is a flat shared tile, p an element offset, ld its row pitch.
def load_a(buf, p, ld):
    return ldmatrix(buf, lambda l: p + (l % 8 + ((l // 8) & 1) * 8) * ld + ((l // 8) & 2) * 4)


def load_a_trans(buf, p, ld):
    return ldmatrix(buf, lambda l: p + (l % 8 + ((l // 8) & 2) * 4) * ld + ((l // 8) & 1) * 8, True)


def load_b_pair(buf, p, ld):
    return ldmatrix(buf, lambda l: p + (l % 8 + ((l // 8) & 2) * 4) * ld + ((l // 8) & 1) * 8)


def load_b_pair_trans(buf, p, ld):
    return ldmatrix(buf, lambda l: p + (l % 8 + ((l // 8) & 1) * 8) * ld + ((l // 8) & 2) * 4, True)


def mma_pair(c0, c1, a, b):
    mma(c0, a, [b[t][0] for t in range(32)], [b[t][1] for t in range(32)])
    mma(c1, a, [b[t][2] for t in range(32)], [b[t][3] for t in range(32)])


def pack_a(acc, kc):
    """mma.cuh's pack_a: the A fragment of columns 16 kc .. 16 kc + 15 from two adjacent C fragments."""
    return [[(acc[2 * kc][t][0], acc[2 * kc][t][1]), (acc[2 * kc][t][2], acc[2 * kc][t][3]),
             (acc[2 * kc + 1][t][0], acc[2 * kc + 1][t][1]), (acc[2 * kc + 1][t][2], acc[2 * kc + 1][t][3])]
            for t in range(32)]


def mma_abt(acc, abuf, a, lda, bbuf, b, ldb, ksteps):
    """mma.cuh's mma_abt: acc += A B^T, A's 16 rows at a, B's rows at b."""
    for kk in range(ksteps):
        af = load_a(abuf, a + kk * 16, lda)
        for np_ in range(len(acc) // 2):
            mma_pair(acc[2 * np_], acc[2 * np_ + 1], af, load_b_pair(bbuf, b + np_ * 16 * ldb + kk * 16, ldb))


def mma_cb(acc, c, bbuf, b, ldb):
    """mma.cuh's mma_cb: acc += C B with C an accumulator, B's rows at b."""
    for kc in range(len(c) // 2):
        a = pack_a(c, kc)
        for dp in range(len(acc) // 2):
            mma_pair(acc[2 * dp], acc[2 * dp + 1], a, load_b_pair_trans(bbuf, b + kc * 16 * ldb + dp * 16, ldb))


def forward(D):
    LD = D + 8
    Q, K, V = (rng.standard_normal((64, D)) for _ in range(3))
    Qs, Ks, Vs = smem(Q, LD), smem(K, LD), smem(V, LD)
    for warp in range(4):
        qf = [load_a(Qs, warp * 16 * LD + kk * 16, LD) for kk in range(D // 16)]
        sc = zeros(8)
        for kk in range(D // 16):
            for np_ in range(4):
                mma_pair(sc[2 * np_], sc[2 * np_ + 1], qf[kk], load_b_pair(Ks, np_ * 16 * LD + kk * 16, LD))
        S = to_matrix(sc)
        assert np.allclose(S, Q[warp * 16:warp * 16 + 16] @ K.T), ("forward S", D, warp)
        P = np.tanh(S)
        from_matrix(P, sc)
        acc = zeros(D // 8)
        mma_cb(acc, sc, Vs, 0, LD)
        assert np.allclose(to_matrix(acc), P @ V), ("forward O", D, warp)


def backward(D, QT):
    LD, LDS, NQ = D + 8, QT + 8, QT // 8
    K, V = rng.standard_normal((64, D)), rng.standard_normal((64, D))
    Q, dO = rng.standard_normal((QT, D)), rng.standard_normal((QT, D))
    Ks, Vs, Qs, dOs = smem(K, LD), smem(V, LD), smem(Q, LD), smem(dO, LD)
    dSs = np.zeros(64 * LDS)
    dS_full = np.zeros((64, QT))
    for warp in range(4):
        keys = slice(warp * 16, warp * 16 + 16)
        st = zeros(NQ)
        mma_abt(st, Ks, warp * 16 * LD, LD, Qs, 0, LD, D // 16)
        ST = to_matrix(st)
        assert np.allclose(ST, K[keys] @ Q.T), ("S^T", D, QT, warp)
        PT = np.tanh(ST)
        from_matrix(PT, st)
        dv = zeros(D // 8)
        mma_cb(dv, st, dOs, 0, LD)
        assert np.allclose(to_matrix(dv), PT @ dO), ("dV", D, QT, warp)
        dpt = zeros(NQ)
        mma_abt(dpt, Vs, warp * 16 * LD, LD, dOs, 0, LD, D // 16)
        assert np.allclose(to_matrix(dpt), V[keys] @ dO.T), ("dP^T", D, QT, warp)
        dST = PT * (to_matrix(dpt) - 0.3)
        from_matrix(dST, st)
        dk = zeros(D // 8)
        for kc in range(NQ // 2):
            pa = pack_a(st, kc)
            for t in range(32):  # the dS^T stores
                g, q = t // 4, t % 4
                lo = (warp * 16 + g) * LDS + kc * 16 + 2 * q
                dSs[lo:lo + 2], dSs[lo + 8 * LDS:lo + 8 * LDS + 2] = pa[t][0], pa[t][1]
                dSs[lo + 8:lo + 10], dSs[lo + 8 * LDS + 8:lo + 8 * LDS + 10] = pa[t][2], pa[t][3]
            for dp in range(D // 16):
                mma_pair(dk[2 * dp], dk[2 * dp + 1], pa, load_b_pair_trans(Qs, kc * 16 * LD + dp * 16, LD))
        assert np.allclose(to_matrix(dk), dST @ Q), ("dK", D, QT, warp)
        dS_full[keys] = dST
    assert np.allclose(dSs.reshape(64, LDS)[:, :QT], dS_full), ("dS^T in shared memory", D, QT)
    QS, WPQ = QT // 16, 4 // (QT // 16)
    dQ = np.zeros((QT, D))
    for warp in range(4):
        qs, wd = warp % QS, warp // QS
        dsa = [load_a_trans(dSs, kc * 16 * LDS + qs * 16, LDS) for kc in range(4)]
        for dp in range(wd, D // 16, WPQ):
            c = zeros(2)
            for kc in range(4):
                mma_pair(c[0], c[1], dsa[kc], load_b_pair_trans(Ks, kc * 16 * LD + dp * 16, LD))
            dQ[qs * 16:qs * 16 + 16, dp * 16:dp * 16 + 16] += to_matrix(c)
    assert np.allclose(dQ, dS_full.T @ K), ("dQ", D, QT)


for D in (64, 80, 96, 128):
    forward(D)
    backward(D, 64 if D <= 96 else 32)
    print(f"D {D}: forward and backward fragment addressing agree with the matmuls")
