"""The paper's model: the appearance network f_A, the motion network f_M, segment flow (eqs. 4-6), the
warp (eq. 7) and AMD binding them (docs/method.md#the-model); and the files weights are kept in."""
