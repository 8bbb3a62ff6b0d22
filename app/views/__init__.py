"""The dashboard pages, one script each; app/main.py lists them for st.navigation."""
