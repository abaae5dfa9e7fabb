"""Cell-type codes, CAR-T states, dtypes and neighbour offset tables: the one place for them.

Kernels and wrappers import these names; no module writes a bare ``1`` for "cancer cell".
"""

import numpy as np

# ---- site contents (``cell_type`` array, uint8) -------------------------------------------
EMPTY = 0
CANCER = 1
NORMAL = 2
CAR_T = 3
N_CELL_TYPES = 4
CELL_TYPE_NAMES = ("empty", "cancer", "normal", "car_t")

# ---- CAR-T states (``car_t_state`` array, uint8) -----------------------------------------
EFFECTOR = 0
EXHAUSTED = 1
CAR_T_STATE_NAMES = ("effector", "exhausted")

# ---- one 16-byte record per lattice site ---------------------------------------------------
CELL_DTYPE = np.dtype(
    [
        ("cell_type", np.uint8),  # EMPTY / CANCER / NORMAL / CAR_T
        ("car_t_state", np.uint8),  # EFFECTOR / EXHAUSTED
        ("kills", np.uint8),  # targets this CAR-T has killed
        ("divisions", np.uint8),  # divisions in this CAR-T's lineage
        ("heading", np.uint8),  # index into the neighbour offsets, or NO_HEADING
        ("spare", np.uint8),  # padding, free for a future per-cell flag
        ("stamp", np.uint16),  # sweep number (mod 2**16) in which the cell last acted
        ("engaged", np.uint16),  # time steps this CAR-T spent in synapses
        ("activation", np.uint16),  # time steps of activation left (CAR-T)
        ("antigen", np.float32),  # target antigen, molecules per cell
    ],
    align=True,
)
assert CELL_DTYPE.itemsize == 16
COUNTER_MAX = 255  # largest uint8 counter value
TIMER_MAX = 65535  # largest uint16 timer value

# ---- random-number purposes: one stream per decision, keyed with (seed, sweep, site) ---------
RNG_DEATH = 0
RNG_TARGET = 1
RNG_KILL = 2
RNG_DIVIDE = 3
RNG_DIVIDE_SITE = 4
RNG_MOVE = 5
RNG_HEADING = 6
RNG_ANTIGEN_NOISE = 7
RNG_SWEEP_ORDER = 8
RNG_ANTIGEN_NOISE_2 = 9
RNG_HEADING_PICK = 10
RNG_ROW_DIRECTION = 11

# ---- neighbourhoods ---------------------------------------------------------------------------
NEIGHBOURHOODS = ("moore", "von_neumann")


def neighbour_offsets(dimensions: int, neighbourhood: str) -> np.ndarray:
    """Integer offsets (n_neighbours, dimensions) of the neighbourhood of a lattice site.

    ``moore`` is every site within Chebyshev distance 1 (8 in 2D, 26 in 3D);
    ``von_neumann`` the sites at Manhattan distance 1 (4 in 2D, 6 in 3D). Kernels walk these
    tables, so a 3D lattice is a different table, not different code.
    """
    if neighbourhood not in NEIGHBOURHOODS:
        raise ValueError(f"unknown neighbourhood {neighbourhood!r}; use one of {NEIGHBOURHOODS}")
    grids = np.meshgrid(*([np.array([-1, 0, 1])] * dimensions), indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    offsets = offsets[np.any(offsets != 0, axis=1)]
    if neighbourhood == "von_neumann":
        offsets = offsets[np.abs(offsets).sum(axis=1) == 1]
    return offsets.astype(np.int64)


def mean_step_length(offsets: np.ndarray) -> float:
    """Mean Euclidean length of one move to a uniformly chosen neighbour, in lattice spacings."""
    return float(np.mean(np.sqrt((offsets.astype(np.float64) ** 2).sum(axis=1))))

# ---- kernel parameter vector: physical rates converted once to per-step numbers ------------
# (built by simulation.scenario.kernel_parameters; kernels index it with these names)
K_CAR_T_KILL_RATE_PER_MIN = 0
K_EXHAUSTED_KILL_FACTOR = 1
K_ANTIGEN_HALF_MAX = 2
K_HILL_COEFFICIENT = 3
K_MAX_KILLS = 4
K_MAX_DIVISIONS = 5
K_EXHAUSTION_ENGAGED_STEPS = 6
K_ACTIVATION_STEPS = 7
K_DT_MIN = 8
K_CAR_T_DIVIDE_P = 9
K_CAR_T_EFFECTOR_DEATH_P = 10
K_CAR_T_EXHAUSTED_DEATH_P = 11
K_CANCER_DIVIDE_P = 12
K_CANCER_DEATH_P = 13
K_ANTIGEN_INHERITANCE_SIGMA = 14
N_KERNEL_PARAMS = 15

# ---- event counters returned by the interaction sweep (``events`` array, int64) ------------
E_CANCER_KILLED = 0
E_NORMAL_KILLED = 1
E_CANCER_BORN = 2
E_CANCER_DIED = 3
E_CAR_T_BORN = 4
E_CAR_T_DIED = 5
E_CAR_T_EXHAUSTED = 6
N_EVENTS = 7
EVENT_NAMES = (
    "cancer_killed",
    "normal_killed",
    "cancer_born",
    "cancer_died",
    "car_t_born",
    "car_t_died",
    "car_t_became_exhausted",
)

NO_HEADING = COUNTER_MAX  # a cell that has not picked a direction yet

# ---- lattice census (``kernel.census`` output order) -----------------------------------------
CENSUS_NAMES = (
    "tumor_cells",
    "tumor_antigen_high",  # antigen >= CAR half-max density
    "tumor_antigen_low",  # 0 < antigen < half-max
    "tumor_antigen_negative",  # antigen == 0
    "normal_cells",
    "normal_antigen_positive",
    "car_t_cells",
    "car_t_effector",
    "car_t_exhausted",
)
N_CENSUS = len(CENSUS_NAMES)
