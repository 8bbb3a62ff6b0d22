"""Attention as an SVM (Tarzanagh et al. 2023) and the scan-and-snap dynamics of one attention layer (Tian et al.
2023). Both models are tiny and train here in a second or two, so this page needs no run from the store."""
import numpy as np
import streamlit as st

from app import common
from probes.attention_gd import LR, PLAIN_LR, compare_with_svm
from probes.dynamics import summarize, train_dynamics
from probes.experiments.scan_and_snap import SCALES as SNAP_SCALES
from probes.figures import png_bytes, svm_convergence_figure, token_attention_figure
from tasks.scan_snap import ScanSnap
from tasks.token_selection import TokenSelection

st.title("Attention as an SVM")
common.sidebar()
st.caption("One attention layer f(X) = v^T X^T softmax(X W z) on n samples of T unit-norm tokens, trained by "
           "gradient descent. Its W grows without bound, and its direction approaches the max-margin SVM that "
           "separates the token it selects in each sample from the others.")

st.subheader("Many problems at once")
common.experiment_result("svm-convergence", "convergence.png", 1, "svm_conv_run")
common.experiment_result("svm-rank", "rank.png", 1, "svm_rank_run")

st.subheader("One problem, trained here")
c1, c2, c3, c4 = st.columns(4)
seed = int(c1.number_input("Problem seed", 0, 10**6, 0, key="svm_seed"))
param = c2.radio("Trained parameters", ["W", "K Q^T"], horizontal=True, key="svm_param")
method = c3.radio("Optimiser", ["normalised GD", "plain GD"], horizontal=True, key="svm_method")
steps = c4.select_slider("Steps", [250, 500, 1000, 2000], 1000, key="svm_steps")


@st.cache_data(max_entries=16, show_spinner="Training and solving the SVMs...")
def selection_study(seed: int, param: str, normalized: bool, steps: int) -> dict:
    P = TokenSelection().sample(seed)
    c = compare_with_svm(P, param, steps=steps, lr=LR if normalized else PLAIN_LR, normalized=normalized)
    own = "fro" if param == "W" else "nuclear"
    sols = {norm: c.solutions[norm][0] for norm in ("fro", "nuclear")}
    scores = P.scores[0].numpy()
    rows = [{"sample": i, "label": int(P.y[0, i]), "selected token": int(c.selected[0, i]),
             "optimal token (top score)": int(P.optimal[0, i]),
             "softmax on selected": round(float(c.trajectory.mass["selected"][-1, 0, i]), 4),
             "support tokens": ", ".join(map(str, np.flatnonzero(sols[own].support[i]))) if sols[own] else "-",
             "score of selected": round(float(scores[i, c.selected[0, i]]), 3)} for i in range(P.y.shape[1])]
    return {"curves": {f"{param}, {'normalised' if normalized else 'plain'} GD": c.curves(own, 5)},
            "own": own, "corr": {n: float(c.trajectory.corr[n][-1, 0]) for n in sols},
            "rank": {n: (s.rank if s else None) for n, s in sols.items()},
            "global": sols[own].globally_optimal if sols[own] else None,
            "local": sols[own].locally_optimal if sols[own] else None, "rows": rows}


with common.guard("The token-selection study"):
    r = selection_study(seed, "W" if param == "W" else "KQ", method == "normalised GD", steps)
    common.image(png_bytes(svm_convergence_figure(r["curves"], {}, f"problem {seed}: n = 6, T = 8, d = 10")))
    names = {"fro": "Frobenius", "nuclear": "nuclear-norm"}
    other = "nuclear" if r["own"] == "fro" else "fro"
    c1, c2, c3 = st.columns(3)
    c1.metric(f"corr with the {names[r['own']]} SVM (its own)", f"{r['corr'][r['own']]:.4f}")
    c2.metric(f"corr with the {names[other]} SVM", f"{r['corr'][other]:.4f}")
    c3.write(f"Rank of the SVM solution: Frobenius {r['rank']['fro']}, nuclear {r['rank']['nuclear']}. "
             f"Selected tokens: {'globally' if r['global'] else 'locally' if r['local'] else 'not'} optimal "
             "(support tokens: the tight constraints).")
    st.dataframe(r["rows"], hide_index=True, width="stretch")

st.header("Scan and snap")
st.caption("Next-token prediction where the last token queries T - 1 context tokens: common tokens shared by every "
           "class and distinct tokens of each class (the j-th most frequent shown per class). One attention layer, "
           "no positional encoding; the decoder Y and the attention Z train with their own learning rates.")
ratio = st.select_slider("Learning-rate ratio eta_Y / eta_Z", list(SNAP_SCALES["quick"]["ratios"]), 1,
                         key="snap_ratio")


@st.cache_data(max_entries=16, show_spinner="Training the attention layer...")
def snap_study(ratio: float) -> dict:
    return summarize(train_dynamics(ScanSnap(), lr_decoder=ratio, lr_attention=1.0, steps=1000))


with common.guard("The scan-and-snap run"):
    m = snap_study(float(ratio))
    left, right = st.columns([3, 2])
    with left:
        common.image(png_bytes(token_attention_figure(m, f"eta_Y / eta_Z = {ratio}, 1000 steps")))
    with right:
        st.metric("Final attention entropy (nats)", f"{m['final_entropy']:.3f}",
                  delta=f"{m['final_entropy'] - m['entropy'][0]:.3f} from uniform", delta_color="off")
        st.metric("Attention on common tokens", f"{m['common_mass'][-1]:.3f}",
                  delta=f"{m['common_mass'][-1] - m['common_mass'][0]:.3f}", delta_color="off")
common.experiment_result("scan-and-snap", "scan_snap.png", 1, "snap_run")

st.markdown("**What to notice.** The correlation climbs to ~1: gradient descent does not just find *an* attention "
            "that picks the right tokens, it heads for the particular one of smallest norm, the SVM solution; with "
            "W = K Q^T it is the smallest *nuclear* norm instead, a lower-rank matrix. Some problems end on tokens "
            "that are only locally optimal, and the SVM of those tokens still predicts the direction. In scan and "
            "snap, attention first leaves the common tokens, which say nothing about the next token, then the rarer "
            "distinct ones; raise the decoder's learning rate and the loss falls before attention has sharpened, so "
            "it freezes earlier with a higher entropy.")
