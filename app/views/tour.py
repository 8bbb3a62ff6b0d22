"""Tour: the teaching demos one after another; each runs its quick version in the background and shows what
the reproduction measured beside the paper's claim."""
import streamlit as st

from app import common, jobs
from probes.experiments.common import experiment_dir

DEMOS = [
    {"title": "1. In-context learning of linear functions", "job": "tour-demo", "args": ["demo"],
     "shipped": "garg-curve",
     "what": "A small transformer is trained only on prompts (x1, y1, ..., xk, yk, x) of random linear functions. "
             "Notice that its error falls like least squares' as k grows, far below averaging or nearest "
             "neighbours: it learned a learning algorithm, with no weight update at test time.",
     "minutes": 2},
    {"title": "2. One layer of linear attention = one step of gradient descent", "name": "vo-1layer",
     "what": "Trained on regression prompts, a single linear self-attention layer ends up with the weights of "
             "one GD step (von Oswald et al.). Notice the trained W_KQ and W_PV matching the construction.",
     "minutes": 1},
    {"title": "3. Two looped layers learn GD++", "name": "vo-gdpp",
     "what": "With two tied layers the model finds GD++: it also preconditions the inputs, and beats plain 2-step "
             "GD. Notice the learned gamma near the paper's 0.179.",
     "minutes": 2},
    {"title": "4. Deeper models move from GD to ridge to least squares", "name": "akyurek-depth",
     "what": "Akyurek et al. trained models of depth 1 to 8 and asked which algorithm each is closest to. Notice "
             "that the closest algorithm changes with depth.",
     "minutes": 10},
    {"title": "5. Newton's method, not gradient descent", "name": "fu-newton",
     "what": "Reading out each layer, Fu et al. found the layers match Newton iterations one or a few at a time, "
             "while matching GD would take exponentially many steps. Notice the straight line for Newton.",
     "minutes": 8},
    {"title": "6. Learning on top of a representation", "name": "guo-representation",
     "what": "Labels are a fresh linear function of a fixed nonlinear feature map Phi*(x) (Guo et al.). The model "
             "learns it near the best possible learner, ridge on Phi*(x). Notice the probes finding Phi*(x) in the "
             "lower layers. The paper's pasting (the upper layers alone, on new features) and copying claims miss "
             "at the quick scale: the claims table says by how much.",
     "minutes": 6},
    {"title": "7. Attention selects tokens like a max-margin SVM", "name": "svm-convergence",
     "what": "One attention layer trained by normalised gradient descent on 100 random token-selection problems "
             "(Tarzanagh et al.). Notice the correlation of W with the SVM solution climbing to ~1, and that with "
             "W = K Q^T the direction is the nuclear-norm SVM's instead.",
     "minutes": 1},
    {"title": "8. Scan and snap", "name": "scan-and-snap",
     "what": "Attention first leaves the tokens that every class shares, then the rarer class-specific ones, and "
             "freezes (Tian et al.). Notice the final entropy rising with the decoder/attention learning-rate ratio.",
     "minutes": 1},
]

st.title("Tour")
common.sidebar()
st.session_state.setdefault("tour_step", 0)


def move(delta: int) -> None:
    st.session_state["tour_step"] += delta


step = st.session_state["tour_step"]
prev, counter, nxt = st.columns([1, 3, 1])
prev.button("Previous", disabled=step == 0, key="tour_prev", on_click=move, args=(-1,))
nxt.button("Next", disabled=step == len(DEMOS) - 1, key="tour_next", on_click=move, args=(1,))
counter.caption(f"Demo {step + 1} of {len(DEMOS)}")

demo = DEMOS[step]
st.header(demo["title"])
st.markdown(demo["what"])
if "name" in demo:
    job_name, args = f"tour-{demo['name']}", ["reproduce", demo["name"], "--scale", "quick"]
    folder = experiment_dir(demo["name"], "quick")
else:
    job_name, folder = demo["job"], common.runs_root() / "tour-demo"
    args = [*demo["args"], "--out", str(folder)]

job = jobs.state(job_name)
if job is None or not job["running"]:
    if st.button(f"Train it yourself (about {demo['minutes']} min on a laptop CPU)", key="tour_run"):
        jobs.start(job_name, args)
        st.rerun()
    if job is not None and job["returncode"] not in (None, 0):
        st.error(f"The demo stopped: {jobs.error_line(job) or job['log'][-300:]}")


@st.fragment(run_every=2)
def job_panel():
    """While the demo runs: its command, the end of its output, and Stop; when it ends, the page reloads."""
    job, flag = jobs.state(job_name), f"tour_running_{job_name}"
    if job is not None and job["running"]:
        st.session_state[flag] = True
        st.info(f"Running `lab {job['cmd']}` (about {demo['minutes']} min on a laptop CPU); its progress, with the "
                "time left:")
        st.code(job["progress"] or "(starting)", language=None)
        if st.button("Stop", key="tour_stop"):
            jobs.stop(job_name)
    elif st.session_state.pop(flag, False):
        st.rerun()


job_panel()
result = common.read_json(folder / "result.json")
if result is None and not list(folder.glob("figures/*.png")):  # not run here yet: what the shipped models measured
    result, folder = common.shipped_result(demo.get("shipped", demo.get("name")))
    if folder.is_relative_to(common.zoo.ROOT):
        st.caption(f"Shown at once: measured on the models shipped with the lab (`lab reproduce {folder.name} --zoo`"
                   f"{'; the same task, trained deeper than the demo' if 'shipped' in demo else ''}).")
if result is not None:
    st.subheader("What it measured")
    common.claims_table(result)
for png in sorted((folder / "figures").glob("*.png")) if (folder / "figures").is_dir() else []:
    common.image(png.read_bytes(), caption=png.name)
