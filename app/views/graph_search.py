"""Graph search (Saparov et al. 2024): a graph-search run on one held-out graph (its choice among the current
vertex's children), its accuracy by lookahead, the traced circuits and reachable sets per layer, and the experiments'
results."""
import streamlit as st
import torch

from app import common
from probes.figures import graph_figure, lookahead_figure, png_bytes
from probes.inspect import PROBES, probe_run
from probes.search import TEST_SEED, held_out_task, search_curve
from tasks.graph_search import DISTRIBUTIONS

st.title("Graph search")
common.sidebar("graph_search")
st.caption("A directed acyclic graph with random vertex ids, given as a shuffled edge list, then the query (start, "
           "goal) and the path so far. The model must name a child of the current vertex from which the goal is "
           "still reachable. Lookahead = how many edges past the children a search must look to tell them apart.")
run = common.selected_run()
if run is not None and run.config.task.name != "graph_search":
    st.info(f"{common.run_name(run)} trains {run.config.task.name}. Train a graph-search run to see it here: "
            "`lab train graph-search` (or start it from the Runs page).")
elif run is not None:
    common.status_note(run)
    task = run.task
    st.subheader("One held-out graph")
    c1, c2, c3 = st.columns(3)
    dist = c1.selectbox("Distribution", DISTRIBUTIONS, index=DISTRIBUTIONS.index("balanced"), key="graph_dist")
    lookahead = c2.select_slider("Lookahead", list(range(task.largest_lookahead() + 1)), 1, key="graph_lookahead",
                                 disabled=dist == "naive")
    example = c3.number_input("Example", 0, 10_000, 0, key="graph_example")
    with common.guard("The example"):
        test = held_out_task(task, distribution=dist, lookahead=-1 if dist == "naive" else lookahead)
        p = test.sample(1, seed=TEST_SEED + 1000 + int(example))
        with torch.no_grad():
            logits = run.format.predict(run.model, p)[0]
        probs = torch.softmax(logits, -1)
        children = sorted(v for u, v in p.xs[0].tolist() if u == int(p.params["current"][0]))
        left, right = st.columns([3, 2])
        with left:
            common.image(png_bytes(graph_figure(p, 0, {v: float(probs[v]) for v in children})))
        with right:
            choice = int(logits.argmax())
            right_answer = bool(p.ys[0, choice])
            st.metric("Model's next vertex", choice, "right" if right_answer else "wrong",
                      delta_color="normal" if right_answer else "inverse")
            st.dataframe({"child of current": children, "model probability": [round(float(probs[v]), 3)
                                                                                for v in children],
                          "reaches the goal": ["yes" if p.ys[0, v] else "no" for v in children]}, hide_index=True)

    st.subheader("Accuracy by lookahead")
    n_prompts = st.select_slider("Prompts per lookahead", [100, 200, 500, 1000], 200, key="graph_prompts")

    @st.cache_data(max_entries=16, show_spinner="Testing on held-out graphs...")
    def curve(path: str, member, stamp: float, n: int) -> dict:
        return search_curve(run.model, run.task, n)

    with common.guard("The accuracy curve"):
        result = curve(str(run.path), st.session_state.get("member"), common.checkpoint_stamp(run.path), n_prompts)
        left, right = st.columns([3, 2])
        with left:
            title = f"{task.n_vertices} vertices, trained on {task.distribution}"
            common.image(png_bytes(lookahead_figure({common.run_name(run): result}, title)))
        with right:
            st.dataframe({"test distribution": list(result["distributions"]),
                          "accuracy": [round(r["mean"], 3) for r in result["distributions"].values()]},
                         hide_index=True)

    st.subheader("Circuits and reachable sets, layer by layer")
    st.caption("Saparov et al.'s tracing over many prompts: the attention entries whose zeroing or maxing lowers the "
               "answer's logit, and per block the longest graph path among the vertices merged into one circuit node "
               "(beside the same circuits with random keys). Then a linear probe reads, from the token of u in each "
               "edge 'E u v', which vertices are reachable from u, beside the same model untrained.")
    if st.button("Trace circuits and decode reachable sets", key="graph_probe"):
        with common.guard("Probe search"):
            common.with_progress(f"lab probe {common.run_name(run)} search",
                                 lambda: probe_run(run, "search", n_prompts=600), "probe-search", 600)
    res = common.read_json(common.analysis_file(run, "eval", "search.json"))
    if res is None:
        st.caption(f"Not computed yet: press the button, or `lab probe {common.run_arg(run)} search`.")
    else:
        for name in ("reach.png", "trace.png"):
            if common.analysis_file(run, "figures", name).is_file():
                common.image(common.analysis_file(run, "figures", name).read_bytes())
        st.code(PROBES["search"].format(res), language=None)

st.subheader("Naive vs balanced training")
common.experiment_result("saparov-distributions", "lookahead.png", 10, "graph_experiment_run")
st.markdown("**What to notice.** Trained on naive random graphs, where most questions need no look-ahead, the model "
            "gets short searches right and long ones wrong; trained on the balanced distribution, where every "
            "lookahead is equally common, it keeps working as the lookahead grows. Inside, the paper finds every "
            "vertex's token holding the set of vertices reachable from it, growing with depth, roughly doubling per "
            "layer: a parallel search. The CPU-sized model here shows little of that (the saparov-mechanism row of "
            "the README): its traced circuits merge paths of about one hop and read the start's edges and the "
            "edges on the way to the goal straight into the last token.")
