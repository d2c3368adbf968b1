"""Library modules behind the facenet-tf1compat scripts.

One module per concern: images (reading, standardisation), dataset (folder layouts),
progress (progress lines), cli (one-line errors). Detection lives in align/, networks in models/.
"""
