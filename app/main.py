"""The lab's dashboard: `lab dashboard` (or `streamlit run app/main.py`). Pages read the run store through lab
and probes; each page starts with the sidebar's run picker (common.sidebar)."""
from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent
st.set_page_config(page_title="the lab: in-context learning", layout="wide")

PAGES = [st.Page(HERE / "views" / "home.py", title="Start here", url_path="home", default=True),
         st.Page(HERE / "views" / "tour.py", title="Tour", url_path="tour"),
         st.Page(HERE / "views" / "runs.py", title="Runs", url_path="runs"),
         st.Page(HERE / "views" / "icl_curve.py", title="In-context curve", url_path="icl_curve"),
         st.Page(HERE / "views" / "inside.py", title="Inside the model", url_path="inside"),
         st.Page(HERE / "views" / "algorithm.py", title="Which algorithm", url_path="algorithm"),
         st.Page(HERE / "views" / "boolean.py", title="Boolean functions", url_path="boolean"),
         st.Page(HERE / "views" / "representation.py", title="Representations", url_path="representation"),
         st.Page(HERE / "views" / "graph_search.py", title="Graph search", url_path="graph_search"),
         st.Page(HERE / "views" / "attention_svm.py", title="Attention as an SVM", url_path="attention_svm"),
         st.Page(HERE / "views" / "sweeps.py", title="Sweeps", url_path="sweeps")]
st.navigation(PAGES).run()
