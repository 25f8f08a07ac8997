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


def col(regs, m):
    return [regs[t][m] for t in range(32)]


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


def a_from_c(acc, kc):
    """P's A fragment for k16 chunk kc from two adjacent C fragments (the kernels' pa[])."""
    return [[(acc[2 * kc][t][0], acc[2 * kc][t][1]), (acc[2 * kc][t][2], acc[2 * kc][t][3]),
             (acc[2 * kc + 1][t][0], acc[2 * kc + 1][t][1]), (acc[2 * kc + 1][t][2], acc[2 * kc + 1][t][3])]
            for t in range(32)]


def forward(D):
    LD = D + 8
    Q, K, V = (rng.standard_normal((64, D)) for _ in range(3))
    Qs, Ks, Vs = smem(Q, LD), smem(K, LD), smem(V, LD)
    for warp in range(4):
        qf = [ldmatrix(Qs, lambda l: (warp * 16 + l % 8 + ((l // 8) & 1) * 8) * LD + kk * 16 + ((l // 8) & 2) * 4)
              for kk in range(D // 16)]
        sc = zeros(8)
        for kk in range(D // 16):
            for np_ in range(4):
                kf = ldmatrix(Ks, lambda l: (np_ * 16 + l % 8 + ((l // 8) & 2) * 4) * LD + kk * 16 + ((l // 8) & 1) * 8)
                mma(sc[2 * np_], qf[kk], col(kf, 0), col(kf, 1))
                mma(sc[2 * np_ + 1], qf[kk], col(kf, 2), col(kf, 3))
        S = to_matrix(sc)
        assert np.allclose(S, Q[warp * 16:warp * 16 + 16] @ K.T), ("forward S", D, warp)
        P = np.tanh(S)
        from_matrix(P, sc)
        acc = zeros(D // 8)
        for kc in range(4):
            pa = a_from_c(sc, kc)
            for dp in range(D // 16):
                vf = ldmatrix(Vs, lambda l: (kc * 16 + l % 8 + ((l // 8) & 1) * 8) * LD + dp * 16 + ((l // 8) & 2) * 4, True)
                mma(acc[2 * dp], pa, col(vf, 0), col(vf, 1))
                mma(acc[2 * dp + 1], pa, col(vf, 2), col(vf, 3))
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
        for kk in range(D // 16):
            ka = ldmatrix(Ks, lambda l: (warp * 16 + l % 8 + ((l // 8) & 1) * 8) * LD + kk * 16 + ((l // 8) & 2) * 4)
            for np_ in range(NQ // 2):
                qf = ldmatrix(Qs, lambda l: (np_ * 16 + l % 8 + ((l // 8) & 2) * 4) * LD + kk * 16 + ((l // 8) & 1) * 8)
                mma(st[2 * np_], ka, col(qf, 0), col(qf, 1))
                mma(st[2 * np_ + 1], ka, col(qf, 2), col(qf, 3))
        ST = to_matrix(st)
        assert np.allclose(ST, K[keys] @ Q.T), ("S^T", D, QT, warp)
        PT = np.tanh(ST)
        from_matrix(PT, st)
        dv = zeros(D // 8)
        for kc in range(NQ // 2):
            pa = a_from_c(st, kc)
            for dp in range(D // 16):
                f = ldmatrix(dOs, lambda l: (kc * 16 + l % 8 + ((l // 8) & 1) * 8) * LD + dp * 16 + ((l // 8) & 2) * 4, True)
                mma(dv[2 * dp], pa, col(f, 0), col(f, 1))
                mma(dv[2 * dp + 1], pa, col(f, 2), col(f, 3))
        assert np.allclose(to_matrix(dv), PT @ dO), ("dV", D, QT, warp)
        dpt = zeros(NQ)
        for kk in range(D // 16):
            va = ldmatrix(Vs, lambda l: (warp * 16 + l % 8 + ((l // 8) & 1) * 8) * LD + kk * 16 + ((l // 8) & 2) * 4)
            for np_ in range(NQ // 2):
                f = ldmatrix(dOs, lambda l: (np_ * 16 + l % 8 + ((l // 8) & 2) * 4) * LD + kk * 16 + ((l // 8) & 1) * 8)
                mma(dpt[2 * np_], va, col(f, 0), col(f, 1))
                mma(dpt[2 * np_ + 1], va, col(f, 2), col(f, 3))
        assert np.allclose(to_matrix(dpt), V[keys] @ dO.T), ("dP^T", D, QT, warp)
        dST = PT * (to_matrix(dpt) - 0.3)
        from_matrix(dST, st)
        dk = zeros(D // 8)
        for kc in range(NQ // 2):
            pa = a_from_c(st, kc)
            for t in range(32):  # the dS^T stores
                g, q = t // 4, t % 4
                lo = (warp * 16 + g) * LDS + kc * 16 + 2 * q
                dSs[lo:lo + 2], dSs[lo + 8 * LDS:lo + 8 * LDS + 2] = pa[t][0], pa[t][1]
                dSs[lo + 8:lo + 10], dSs[lo + 8 * LDS + 8:lo + 8 * LDS + 10] = pa[t][2], pa[t][3]
            for dp in range(D // 16):
                f = ldmatrix(Qs, lambda l: (kc * 16 + l % 8 + ((l // 8) & 1) * 8) * LD + dp * 16 + ((l // 8) & 2) * 4, True)
                mma(dk[2 * dp], pa, col(f, 0), col(f, 1))
                mma(dk[2 * dp + 1], pa, col(f, 2), col(f, 3))
        assert np.allclose(to_matrix(dk), dST @ Q), ("dK", D, QT, warp)
        dS_full[keys] = dST
    assert np.allclose(dSs.reshape(64, LDS)[:, :QT], dS_full), ("dS^T in shared memory", D, QT)
    QS, WPQ = QT // 16, 4 // (QT // 16)
    dQ = np.zeros((QT, D))
    for warp in range(4):
        qs, wd = warp % QS, warp // QS
        dsa = [ldmatrix(dSs, lambda l: (kc * 16 + l % 8 + ((l // 8) & 2) * 4) * LDS + qs * 16 + ((l // 8) & 1) * 8, True)
               for kc in range(4)]
        for dp in range(wd, D // 16, WPQ):
            c = zeros(2)
            for kc in range(4):
                f = ldmatrix(Ks, lambda l: (kc * 16 + l % 8 + ((l // 8) & 1) * 8) * LD + dp * 16 + ((l // 8) & 2) * 4, True)
                mma(c[0], dsa[kc], col(f, 0), col(f, 1))
                mma(c[1], dsa[kc], col(f, 2), col(f, 3))
            dQ[qs * 16:qs * 16 + 16, dp * 16:dp * 16 + 16] += to_matrix(c)
    assert np.allclose(dQ, dS_full.T @ K), ("dQ", D, QT)


for D in (64, 80, 96, 128):
    forward(D)
    backward(D, 64 if D <= 96 else 32)
    print(f"D {D}: forward and backward fragment addressing agree with the matmuls")
