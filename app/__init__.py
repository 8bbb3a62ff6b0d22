"""The Streamlit dashboard (reads run folders through lab and probes; holds no science of its own)."""
