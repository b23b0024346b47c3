# Golden values for evidence.stats.escalc: metafor's escalc() on published data sets
# (package metadat) and on edge cases. Run from the repository root:
#   Rscript tests/golden/escalc.R
# Writes tests/golden/escalc.json (inputs and outputs of every case, full precision).
#
# Cases not built into metafor 3.8 are computed in R with metafor's own building blocks:
# - SMD from a signed p value: t = sign(p) * qt(|p|/2, n1+n2-2, lower.tail=FALSE), then
#   escalc("SMD", ti=t) (the rule metafor 4 applies for its pi argument);
# - SMCRD (controlled pre-post design): escalc("SMCR") per arm, yi = yT - yC,
#   vi = vT + vC (metafor's help page for escalc, Morris 2008 example).

suppressPackageStartupMessages({
  library(metafor)
  library(metadat)
  library(jsonlite)
})

cases <- list()
add_case <- function(name, measure, args, res, options = list()) {
  if (length(options) == 0) options <- structure(list(), names = character(0))  # JSON {}
  cases[[length(cases) + 1]] <<- list(
    name = name, measure = measure, options = options,
    args = lapply(args, as.numeric),
    yi = as.numeric(res$yi), vi = as.numeric(res$vi)
  )
}
run <- function(name, measure, args, options = list()) {
  res <- do.call(escalc, c(list(measure = measure), args, options))
  add_case(name, measure, args, res, options)
}

# ---- data sets --------------------------------------------------------------------------
normand <- dat.normand1999
curtis <- dat.curtis1998
# Morris (2008) example as given on metafor's escalc help page.
morrisT <- data.frame(
  m_pre = c(30.6, 23.5, 0.5, 53.4, 35.6), m_post = c(38.5, 26.8, 0.7, 75.9, 36.0),
  sd_pre = c(15.0, 3.1, 0.1, 14.5, 4.7), sd_post = c(11.6, 4.1, 0.1, 4.4, 4.6),
  ni = c(20, 50, 9, 10, 14), ri = c(0.47, 0.64, 0.77, 0.89, 0.44))
morrisC <- data.frame(
  m_pre = c(23.1, 24.9, 0.6, 55.7, 34.8), m_post = c(19.7, 25.3, 0.6, 60.7, 33.4),
  sd_pre = c(13.8, 4.1, 0.2, 17.3, 3.1), sd_post = c(14.8, 3.3, 0.2, 17.9, 6.9),
  ni = c(20, 42, 9, 11, 14), ri = c(0.47, 0.64, 0.77, 0.89, 0.44))
# Edge cases for two-group means: n = 2 per arm, equal means, tiny and huge SDs,
# very unequal arms, one row with a missing mean.
edge_means <- data.frame(
  m1i = c(5, 10, 0.001, 100, 3, NA), sd1i = c(1, 2, 1e-3, 50, 0.5, 1),
  n1i = c(2, 2, 3, 1000, 2, 10), m2i = c(4, 10, 0, 80, 9, 1),
  sd2i = c(2, 2, 2e-3, 40, 1.5, 1), n2i = c(2, 3, 3, 5, 200, 10))

means_sets <- list(
  normand1999 = list(m1i = normand$m1i, sd1i = normand$sd1i, n1i = normand$n1i,
                     m2i = normand$m2i, sd2i = normand$sd2i, n2i = normand$n2i),
  curtis1998 = list(m1i = curtis$m1i, sd1i = curtis$sd1i, n1i = curtis$n1i,
                    m2i = curtis$m2i, sd2i = curtis$sd2i, n2i = curtis$n2i),
  morris2008_post = list(m1i = morrisT$m_post, sd1i = morrisT$sd_post, n1i = morrisT$ni,
                         m2i = morrisC$m_post, sd2i = morrisC$sd_post, n2i = morrisC$ni),
  edge = as.list(edge_means)
)
for (set in names(means_sets)) {
  for (vt in c("LS", "UB", "LS2", "AV")) run(paste0("SMD/", set), "SMD", means_sets[[set]],
                                              list(vtype = vt))
  for (vt in c("LS", "LS2")) run(paste0("SMDH/", set), "SMDH", means_sets[[set]],
                                 list(vtype = vt))
  for (vt in c("LS", "UB", "HO")) run(paste0("MD/", set), "MD", means_sets[[set]], list(vtype = vt))
}

# ---- SMD from t, signed p and reported d --------------------------------------------------
t_from_means <- function(s) {
  sp <- sqrt(((s$n1i - 1) * s$sd1i^2 + (s$n2i - 1) * s$sd2i^2) / (s$n1i + s$n2i - 2))
  (s$m1i - s$m2i) / (sp * sqrt(1 / s$n1i + 1 / s$n2i))
}
stat_sets <- list(
  normand1999 = list(n1i = normand$n1i, n2i = normand$n2i, t = t_from_means(means_sets$normand1999)),
  curtis1998 = list(n1i = curtis$n1i, n2i = curtis$n2i, t = t_from_means(means_sets$curtis1998)),
  edge = list(n1i = c(2, 2, 3, 50, 400, 10), n2i = c(2, 3, 3, 60, 380, 12),
              t = c(2.5, -3.1, 0, -0.4, 12, -1e-6))
)
p_sets <- list(
  normand1999 = list(n1i = normand$n1i, n2i = normand$n2i,
                     p = sign(stat_sets$normand1999$t) *
                       2 * pt(abs(stat_sets$normand1999$t), normand$n1i + normand$n2i - 2,
                              lower.tail = FALSE)),
  curtis1998 = list(n1i = curtis$n1i, n2i = curtis$n2i,
                    p = sign(stat_sets$curtis1998$t) *
                      2 * pt(abs(stat_sets$curtis1998$t), curtis$n1i + curtis$n2i - 2,
                             lower.tail = FALSE)),
  edge = list(n1i = c(2, 2, 3, 50, 400, 10), n2i = c(2, 3, 3, 60, 380, 12),
              p = c(1, -1, 0.5, -0.049, 1e-12, -0.999))
)
for (set in names(stat_sets)) {
  s <- stat_sets[[set]]
  for (vt in c("LS", "UB")) {
    run(paste0("SMD:t/", set), "SMD", list(ti = s$t, n1i = s$n1i, n2i = s$n2i), list(vtype = vt))
    d <- s$t * sqrt(1 / s$n1i + 1 / s$n2i)
    run(paste0("SMD:d/", set), "SMD", list(di = d, n1i = s$n1i, n2i = s$n2i), list(vtype = vt))
    p <- p_sets[[set]]
    tp <- sign(p$p) * qt(abs(p$p) / 2, df = p$n1i + p$n2i - 2, lower.tail = FALSE)
    res <- escalc("SMD", ti = tp, n1i = p$n1i, n2i = p$n2i, vtype = vt)
    add_case(paste0("SMD:p/", set), "SMD", list(pi = p$p, n1i = p$n1i, n2i = p$n2i), res,
             list(vtype = vt))
  }
}

# ---- single-group pre-post: SMCR and SMCC -----------------------------------------------
edge_pp <- data.frame(
  m_post = c(12, 12, 5, 0.3, 40), m_pre = c(10, 10, 5, 0.1, 50),
  sd_post = c(3, 3, 1, 0.1, 9), sd_pre = c(2.5, 2.5, 1, 0.2, 10),
  ni = c(3, 3, 4, 500, 25), ri = c(0.999, -0.999, 0, 0.5, 0.98))
pp_sets <- list(
  morris2008_T = morrisT, morris2008_C = morrisC, edge = edge_pp
)
for (set in names(pp_sets)) {
  s <- pp_sets[[set]]
  for (vt in c("LS", "LS2")) {
    run(paste0("SMCR/", set), "SMCR",
        list(m1i = s$m_post, m2i = s$m_pre, sd1i = s$sd_pre, ni = s$ni, ri = s$ri),
        list(vtype = vt))
    run(paste0("SMCC/", set), "SMCC",
        list(m1i = s$m_post, m2i = s$m_pre, sd1i = s$sd_post, sd2i = s$sd_pre, ni = s$ni,
             ri = s$ri), list(vtype = vt))
  }
}

# ---- controlled pre-post: difference of SMCRs -------------------------------------------
edge_ppc_T <- data.frame(m_post = c(12, 3, 100), m_pre = c(10, 3.5, 90), sd_pre = c(2, 1, 30),
                         ni = c(3, 40, 6), ri = c(0.999, -0.5, 0.2))
edge_ppc_C <- data.frame(m_post = c(11, 3.2, 95), m_pre = c(10.5, 3.4, 91), sd_pre = c(2.2, 0.8, 25),
                         ni = c(3, 35, 300), ri = c(0.999, -0.5, 0.2))
# a third set: normand1999 treated as post scores, with invented baselines
nb <- list(T = data.frame(m_post = normand$m1i, m_pre = normand$m1i + 10, sd_pre = normand$sd1i * 1.1,
                          ni = normand$n1i, ri = 0.6),
           C = data.frame(m_post = normand$m2i, m_pre = normand$m2i + 3, sd_pre = normand$sd2i * 0.9,
                          ni = normand$n2i, ri = 0.6))
ppc_sets <- list(morris2008 = list(T = morrisT, C = morrisC), edge = list(T = edge_ppc_T, C = edge_ppc_C),
                 normand1999_baseline = nb)
for (set in names(ppc_sets)) {
  T <- ppc_sets[[set]]$T
  C <- ppc_sets[[set]]$C
  for (vt in c("LS", "LS2")) {
    rT <- escalc("SMCR", m1i = T$m_post, m2i = T$m_pre, sd1i = T$sd_pre, ni = T$ni, ri = T$ri, vtype = vt)
    rC <- escalc("SMCR", m1i = C$m_post, m2i = C$m_pre, sd1i = C$sd_pre, ni = C$ni, ri = C$ri, vtype = vt)
    add_case(paste0("SMCRD/", set), "SMCRD",
             list(m1i = T$m_post, m1i_pre = T$m_pre, sd1i_pre = T$sd_pre, n1i = T$ni,
                  m2i = C$m_post, m2i_pre = C$m_pre, sd2i_pre = C$sd_pre, n2i = C$ni,
                  ri = rep_len(T$ri, length(T$ni))),
             list(yi = rT$yi - rC$yi, vi = rT$vi + rC$vi), list(vtype = vt))
  }
}

# ---- 2x2 tables ---------------------------------------------------------------------------
bcg <- dat.bcg
niel <- dat.nielweise2007
edge_tab <- data.frame(ai = c(0, 0, 5, 10, 1, 0), bi = c(10, 10, 0, 0, 1, 1),
                       ci = c(0, 3, 5, 0, 1, 1), di = c(12, 9, 0, 7, 1, 0))
tab_sets <- list(
  bcg = list(ai = bcg$tpos, bi = bcg$tneg, ci = bcg$cpos, di = bcg$cneg),
  nielweise2007 = list(ai = niel$ai, n1i = niel$n1i, ci = niel$ci, n2i = niel$n2i),
  edge = as.list(edge_tab)
)
zero_rules <- list(
  list(), list(to = "all"), list(to = "if0all"), list(to = "none"), list(add = 1, to = "only0"),
  list(drop00 = TRUE)
)
for (set in names(tab_sets)) {
  for (m in c("OR", "RR", "RD", "OR2DL", "OR2DN")) {
    for (zr in zero_rules) run(paste0(m, "/", set), m, tab_sets[[set]], zr)
  }
  run(paste0("RD/", set), "RD", tab_sets[[set]], list(vtype = "UB"))
  run(paste0("RD/", set), "RD", tab_sets[[set]], list(vtype = "AV"))
}

# ---- correlations -------------------------------------------------------------------------
molloy <- dat.molloy2014
mcd <- dat.mcdaniel1994
cor_sets <- list(
  molloy2014 = list(ri = molloy$ri, ni = molloy$ni),
  mcdaniel1994 = list(ri = mcd$ri, ni = mcd$ni),
  edge = list(ri = c(0.9999, -0.9999, 0, 0.5, -0.3), ni = c(4, 4, 5, 10000, 6))
)
for (set in names(cor_sets)) {
  run(paste0("COR/", set), "COR", cor_sets[[set]], list(vtype = "LS"))
  run(paste0("COR/", set), "COR", cor_sets[[set]], list(vtype = "AV"))
  run(paste0("ZCOR/", set), "ZCOR", cor_sets[[set]])
}

out <- list(
  source = paste("metafor", as.character(packageVersion("metafor")), "escalc();",
                 "metadat", as.character(packageVersion("metadat"))),
  cases = cases
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
           "tests/golden/escalc.json")
cat(length(cases), "cases written\n")
