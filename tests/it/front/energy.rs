//! IR energies equal hand-computed energies on random states, so expansion, index maps,
//! canonicalisation and the directed log-densities are checked numerically, not structurally.

use super::*;

/// Energy of the rbm by the formula, against the IR evaluator.
#[test]
fn rbm_energy_matches_formula() {
    let m = stdlib("rbm", &[("nv", 5.0), ("nh", 3.0)]);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let s = random_state(&m, &mut rng);
        let (w, a, b) = (&p.values[0], &p.values[1], &p.values[2]);
        let (v, h) = (&s.values[0], &s.values[1]);
        let mut e = 0.0;
        for i in 0..5 {
            e -= a[i] * v[i];
            for j in 0..3 {
                e -= v[i] * w[i * 3 + j] * h[j];
            }
        }
        for j in 0..3 {
            e -= b[j] * h[j];
        }
        close(m.energy(&p, &s), e);
    }
}

#[test]
fn ising_energy_matches_formula() {
    let l = 5usize;
    let m = stdlib("ising", &[("L", l as f64), ("beta", 0.3)]);
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let s = &st.values[0];
        let mut e = 0.0;
        for i in 0..l {
            for j in 0..l {
                e -= 0.3 * s[i * l + j] * (s[((i + 1) % l) * l + j] + s[i * l + (j + 1) % l]);
            }
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn bm_energy_matches_formula() {
    let m = stdlib("bm", &[("nv", 4.0), ("nh", 3.0)]);
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (l, j, w, a, b) = (
            &p.values[0],
            &p.values[1],
            &p.values[2],
            &p.values[3],
            &p.values[4],
        );
        let (v, h) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for i in 0..4 {
            for k in 0..4 {
                e -= 0.5 * v[i] * l[i * 4 + k] * v[k];
            }
            for q in 0..3 {
                e -= v[i] * w[i * 3 + q] * h[q];
            }
            e -= a[i] * v[i];
        }
        for q in 0..3 {
            for r in 0..3 {
                e -= 0.5 * h[q] * j[q * 3 + r] * h[r];
            }
            e -= b[q] * h[q];
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn dbm_energy_matches_formula() {
    let m = stdlib("dbm", &[("nv", 4.0), ("n1", 3.0), ("n2", 2.0)]);
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (w1, w2, a, b1, b2) = (
            &p.values[0],
            &p.values[1],
            &p.values[2],
            &p.values[3],
            &p.values[4],
        );
        let (v, h1, h2) = (&st.values[0], &st.values[1], &st.values[2]);
        let mut e = 0.0;
        for i in 0..4 {
            e -= a[i] * v[i];
            for j in 0..3 {
                e -= v[i] * w1[i * 3 + j] * h1[j];
            }
        }
        for j in 0..3 {
            e -= b1[j] * h1[j];
            for k in 0..2 {
                e -= h1[j] * w2[j * 2 + k] * h2[k];
            }
        }
        for k in 0..2 {
            e -= b2[k] * h2[k];
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn grbm_expands_to_five_monomials_and_matches_formula() {
    let m = stdlib("grbm", &[("nv", 3.0), ("nh", 2.0)]);
    let v = m.group_id("v").expect("v");
    let shapes: Vec<Vec<(GroupId, u32)>> = m
        .terms
        .iter()
        .map(|t| t.units.iter().map(|u| (u.group, u.power)).collect())
        .collect();
    let h = m.group_id("h").expect("h");
    assert_eq!(
        shapes,
        vec![
            vec![(v, 2)],
            vec![(v, 1)],
            vec![],
            vec![(v, 1), (h, 1)],
            vec![(h, 1)]
        ]
    );
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20 {
        let mut p = random_params(&m, &mut rng);
        p.values[3].iter_mut().for_each(|s| *s = 0.5 + s.abs()); // sigma > 0
        let st = random_state(&m, &mut rng);
        let (w, a, b, sg) = (&p.values[0], &p.values[1], &p.values[2], &p.values[3]);
        let (vv, hh) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for i in 0..3 {
            e += (vv[i] - a[i]).powi(2) / (2.0 * sg[i] * sg[i]);
            for j in 0..2 {
                e -= vv[i] / sg[i] * w[i * 2 + j] * hh[j];
            }
        }
        for j in 0..2 {
            e -= b[j] * hh[j];
        }
        close(m.energy(&p, &st), e);
    }
}

#[test]
fn spin_rbm_potts_and_class_rbm_match_formulas() {
    let mut rng = StdRng::seed_from_u64(6);
    let m = stdlib("spin_rbm", &[("nv", 3.0), ("nh", 2.0)]);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (w, a, b) = (&p.values[0], &p.values[1], &p.values[2]);
        let (v, h) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for i in 0..3 {
            e -= a[i] * v[i];
            for j in 0..2 {
                e -= v[i] * w[i * 2 + j] * h[j];
            }
        }
        e -= b[0] * h[0] + b[1] * h[1];
        close(m.energy(&p, &st), e);
    }
    let (l, q) = (3usize, 3usize);
    let m = stdlib("potts", &[("L", l as f64), ("q", q as f64), ("J", 0.7)]);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let s = &st.values[0];
        let state = |i: usize, j: usize| {
            (0..q)
                .find(|&c| s[(i * l + j) * q + c] == 1.0)
                .expect("one-hot")
        };
        let mut e = 0.0;
        for i in 0..l {
            for j in 0..l {
                e -= 0.7 * f64::from(u8::from(state(i, j) == state((i + 1) % l, j)));
                e -= 0.7 * f64::from(u8::from(state(i, j) == state(i, (j + 1) % l)));
            }
        }
        close(m.energy(&p, &st), e);
    }
    let m = stdlib("class_rbm", &[("nv", 3.0), ("nh", 2.0), ("nc", 4.0)]);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (w, u, a, b, d) = (
            &p.values[0],
            &p.values[1],
            &p.values[2],
            &p.values[3],
            &p.values[4],
        );
        let (v, y, h) = (&st.values[0], &st.values[1], &st.values[2]);
        let c = (0..4).find(|&c| y[c] == 1.0).expect("one-hot label");
        let mut e = -d[c];
        for j in 0..2 {
            e -= b[j] * h[j] + u[c * 2 + j] * h[j];
            for i in 0..3 {
                e -= v[i] * w[i * 2 + j] * h[j];
            }
        }
        for i in 0..3 {
            e -= a[i] * v[i];
        }
        close(m.energy(&p, &st), e);
    }
}

/// The energy of a directed model is -log p exactly, so exp(-E) sums to one over all states.
#[test]
fn sbn_energy_is_a_normalised_negative_log_density() {
    let m = stdlib("sbn", &[("nv", 3.0), ("n1", 2.0), ("n2", 2.0)]);
    assert_eq!(m.lognorms.len(), 3);
    assert_eq!(m.directed.len(), 3);
    assert!(m.lognorms.iter().all(|l| l.kind == LogNormKind::Softplus));
    let (h2, h1) = (m.group_id("h2").expect("h2"), m.group_id("h1").expect("h1"));
    assert_eq!(m.directed_of(h1).expect("h1 | h2").parents, vec![h2]);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..5 {
        let p = random_params(&m, &mut rng);
        let total: f64 = all_binary_states(&m)
            .iter()
            .map(|s| (-m.energy(&p, s)).exp())
            .sum();
        close(total, 1.0);
    }
}

/// A DBN's directed layers are normalised, so summing exp(-E) over everything gives the top
/// RBM's partition function.
#[test]
fn dbn_sums_to_the_top_rbm_partition_function() {
    let m = stdlib("dbn", &[("nv", 3.0), ("n1", 2.0), ("n2", 2.0), ("n3", 2.0)]);
    let mut rng = StdRng::seed_from_u64(8);
    let p = random_params(&m, &mut rng);
    let total: f64 = all_binary_states(&m)
        .iter()
        .map(|s| (-m.energy(&p, s)).exp())
        .sum();
    let (w3, c2, b3) = (&p.values[0], &p.values[1], &p.values[2]);
    let mut z = 0.0;
    for bits in 0..16u32 {
        let h2 = [f64::from(bits & 1), f64::from((bits >> 1) & 1)];
        let h3 = [f64::from((bits >> 2) & 1), f64::from((bits >> 3) & 1)];
        let mut e = 0.0;
        for k in 0..2 {
            e -= c2[k] * h2[k] + b3[k] * h3[k];
            for l in 0..2 {
                e -= h2[k] * w3[k * 2 + l] * h3[l];
            }
        }
        z += (-e).exp();
    }
    close(total, z);
}

/// `normal` conditionals add (x - mean)^2 / (2 sd^2) + log sd + log(2 pi) / 2 per element.
#[test]
fn normal_conditional_energy_is_the_gaussian_negative_log_density() {
    let src = "model lg(nx = 3, nh = 2) {
        latent h[nh] : binary
        visible x[nx] : real
        param W[nx, nh] ~ normal(0, 1)
        param mu[nx] = 0
        param sd[nx] = 1 : positive
        param c[nh] = 0
        h[j] ~ bernoulli(sigmoid(c[j]))
        x[i] ~ normal(W[i, j] * h[j] + mu[i], sd[i])
    }";
    let m = model_with(src, &[]);
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..20 {
        let mut p = random_params(&m, &mut rng);
        p.values[2].iter_mut().for_each(|s| *s = 0.3 + s.abs());
        let st = random_state(&m, &mut rng);
        let (w, mu, sd, c) = (&p.values[0], &p.values[1], &p.values[2], &p.values[3]);
        let (h, x) = (&st.values[0], &st.values[1]);
        let mut e = 0.0;
        for j in 0..2 {
            let pr = ebmc::ir::eval::sigmoid(c[j]);
            e -= if h[j] == 1.0 {
                pr.ln()
            } else {
                (1.0 - pr).ln()
            };
        }
        for i in 0..3 {
            let mean = mu[i] + (0..2).map(|j| w[i * 2 + j] * h[j]).sum::<f64>();
            e += (x[i] - mean).powi(2) / (2.0 * sd[i] * sd[i])
                + sd[i].ln()
                + 0.5 * (2.0 * std::f64::consts::PI).ln();
        }
        close(m.energy(&p, &st), e);
    }
}

/// A categorical conditional: -log softmax of the logits at the chosen state.
#[test]
fn categorical_conditional_energy_is_minus_log_softmax() {
    let src = "model cat(n = 2, k = 3, nh = 2) {
        latent h[nh] : binary
        visible y[n, k] : categorical
        param U[k, nh] ~ normal(0, 1)
        param d[n, k] = 0
        h[j] ~ bernoulli(sigmoid(0))
        y[r, c] ~ categorical(softmax(U[c, j] * h[j] + d[r, c]))
    }";
    let m = model_with(src, &[]);
    assert!(matches!(
        m.lognorms[1].kind,
        LogNormKind::LogSumExp { state_var: 1 }
    ));
    let mut rng = StdRng::seed_from_u64(10);
    for _ in 0..20 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (u, d) = (&p.values[0], &p.values[1]);
        let (h, y) = (&st.values[0], &st.values[1]);
        let mut e = 2.0 * std::f64::consts::LN_2; // two fair coins
        for r in 0..2 {
            let z: Vec<f64> = (0..3)
                .map(|c| d[r * 3 + c] + (0..2).map(|j| u[c * 2 + j] * h[j]).sum::<f64>())
                .collect();
            let chosen = (0..3).find(|&c| y[r * 3 + c] == 1.0).expect("one-hot");
            e -= z[chosen] - ebmc::ir::eval::logsumexp(&z);
        }
        close(m.energy(&p, &st), e);
    }
}

/// Convolution indices: `v[y + dy, x + dx]` with valid-sized hidden maps is proven in range,
/// and the energy matches a direct convolution.
#[test]
fn conv_rbm_energy_matches_direct_convolution() {
    let (p, sm, d) = ebmc::front::compile_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/conv_rbm.ebm"),
        &CompileOptions {
            overrides: vec![("H".into(), 4.0), ("K".into(), 2.0)],
        },
    );
    assert!(d.is_empty(), "{}", render(&d, &sm));
    let m = &p.models[0];
    let (hh, k, nf) = (4usize, 2usize, 2usize);
    let o = hh - k + 1;
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..10 {
        let pr = random_params(m, &mut rng);
        let st = random_state(m, &mut rng);
        let (f, a, b) = (&pr.values[0], pr.values[1][0], &pr.values[2]);
        let (v, h) = (&st.values[0], &st.values[1]);
        let mut e = -a * v.iter().sum::<f64>();
        for ff in 0..nf {
            for y in 0..o {
                for x in 0..o {
                    let hv = h[(ff * o + y) * o + x];
                    e -= b[ff] * hv;
                    for dy in 0..k {
                        for dx in 0..k {
                            e -= hv * f[(ff * k + dy) * k + dx] * v[(y + dy) * hh + x + dx];
                        }
                    }
                }
            }
        }
        close(m.energy(&pr, &st), e);
    }
}

/// Spin squares vanish into constants, binary squares become linear, and like terms merge.
#[test]
fn unit_powers_are_canonicalised() {
    let src = "model m(n = 3) {
        visible s[n] : spin
        visible x[n] : binary
        visible r[n] : real
        param a[n] = 0
        energy = s[i]^2 * a[i] + x[i]^2 * a[i] + s[i]^3 + r[i]^2 + x[i] * x[i] * r[i] + 2 * s[i] - s[i]
    }";
    let m = model_with(src, &[]);
    let summary: Vec<Vec<(u32, u32)>> = m
        .terms
        .iter()
        .map(|t| t.units.iter().map(|u| (u.group.0, u.power)).collect())
        .collect();
    // s^2 a -> a (no units); x^2 a -> x a; s^3 -> s (merged with 2s - s); r^2; x^2 r -> x r
    assert_eq!(
        summary,
        vec![
            vec![],
            vec![(1, 1)],
            vec![(0, 1)],
            vec![(2, 2)],
            vec![(1, 1), (2, 1)]
        ]
    );
    let mut rng = StdRng::seed_from_u64(12);
    for _ in 0..10 {
        let p = random_params(&m, &mut rng);
        let st = random_state(&m, &mut rng);
        let (s, x, r, a) = (&st.values[0], &st.values[1], &st.values[2], &p.values[0]);
        let e: f64 = (0..3)
            .map(|i| {
                s[i].powi(2) * a[i]
                    + x[i].powi(2) * a[i]
                    + s[i].powi(3)
                    + r[i].powi(2)
                    + x[i] * x[i] * r[i]
                    + s[i]
            })
            .sum();
        close(m.energy(&p, &st), e);
    }
}
