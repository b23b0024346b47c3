# Golden values for evidence.stats.bias / influence / sensitivity from metafor 3.8-1
# (regtest, ranktest, trimfill, fsn, leave1out, influence, cumul, rma.mv with sqrt(vi),
# PET-PEESE by weighted lm, and the pieces of the sensitivity suite: aggregate(struct="CS"),
# rma.mv three-level, CHE with clubSandwich's CR2).
#
# Run from the repository root:  Rscript tests/golden/bias.R
# Writes tests/golden/bias.json (full precision). The tests read the JSON; R is not needed then.

suppressPackageStartupMessages({
  library(metafor)
  library(clubSandwich)
  library(jsonlite)
})

num <- function(x) if (is.null(x)) NA else unname(as.numeric(x))
txt <- function(x) paste(capture.output(print(x)), collapse = "\n")
quiet <- function(expr) suppressWarnings(expr)

# ---------------------------------------------------------------- data sets
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
bcg$ni <- with(dat.bcg, tpos + tneg + cpos + cneg)
normand <- escalc(measure = "SMD", m1i = m1i, sd1i = sd1i, n1i = n1i,
                  m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999)
normand$ni <- with(dat.normand1999, n1i + n2i)
hackshaw <- dat.hackshaw1998
bangert <- dat.bangertdrowns2004

datasets <- list(
  bcg = list(yi = num(bcg$yi), vi = num(bcg$vi), ni = num(bcg$ni), order = num(bcg$year),
             ablat = num(bcg$ablat), source = "dat.bcg, escalc(measure='RR')"),
  normand1999 = list(yi = num(normand$yi), vi = num(normand$vi), ni = num(normand$ni),
                     order = num(normand$vi),
                     source = "dat.normand1999, escalc(measure='SMD')"),
  hackshaw1998 = list(yi = num(hackshaw$yi), vi = num(hackshaw$vi), ni = NA,
                      order = num(hackshaw$year),
                      source = "dat.hackshaw1998 (yi, vi given; no sample sizes)"),
  bangertdrowns2004 = list(yi = num(bangert$yi), vi = num(bangert$vi), ni = num(bangert$ni),
                           order = num(bangert$year),
                           source = "dat.bangertdrowns2004 (yi, vi, ni given)")
)

# fits: name -> (dataset, method, test, mods)
fits <- list(
  list(name = "bcg_REML", data = "bcg", method = "REML", test = "z", mods = FALSE),
  list(name = "bcg_DL_knha", data = "bcg", method = "DL", test = "knha", mods = FALSE),
  list(name = "bcg_EE", data = "bcg", method = "EE", test = "z", mods = FALSE),
  list(name = "bcg_ablat", data = "bcg", method = "REML", test = "z", mods = TRUE),
  list(name = "normand1999_REML", data = "normand1999", method = "REML", test = "z",
       mods = FALSE),
  list(name = "hackshaw1998_REML", data = "hackshaw1998", method = "REML", test = "z",
       mods = FALSE),
  list(name = "bangertdrowns2004_REML", data = "bangertdrowns2004", method = "REML",
       test = "z", mods = FALSE)
)

fit_of <- function(f) {
  d <- datasets[[f$data]]
  if (f$mods) {
    rma(d$yi, d$vi, mods = ~ d$ablat, method = f$method, test = f$test)
  } else {
    rma(d$yi, d$vi, method = f$method, test = f$test)
  }
}

list_rma <- function(x, names) {
  out <- lapply(names, function(n) num(x[[n]]))
  names(out) <- names
  out
}

cases <- list()
add <- function(fit, kind, args, result) {
  cases[[length(cases) + 1]] <<- list(fit = fit, kind = kind, args = args, result = result)
}

for (f in fits) {
  d <- datasets[[f$data]]
  res <- fit_of(f)
  ni <- if (all(is.na(d$ni))) NULL else d$ni

  # ---- regtest: every predictor x both models
  for (model in c("rma", "lm")) {
    for (pred in c("sei", "vi", "ni", "ninv")) {
      if (pred %in% c("ni", "ninv") && is.null(ni)) next
      rt <- if (pred %in% c("ni", "ninv")) {
        regtest(res, model = model, predictor = pred, ni = ni)
      } else {
        regtest(res, model = model, predictor = pred)
      }
      add(f$name, "regtest", list(model = model, predictor = pred),
          list(zval = num(rt$zval), pval = num(rt$pval), ddf = num(rt$ddf),
               est = num(rt$est), ci_lb = num(rt$ci.lb), ci_ub = num(rt$ci.ub),
               text = txt(rt)))
    }
  }

  # ---- influence (all fits, including the meta-regression)
  inf <- influence(res)
  add(f$name, "influence", list(),
      list(rstudent = num(inf$inf$rstudent), dffits = num(inf$inf$dffits),
           cook_d = num(inf$inf$cook.d), cov_r = num(inf$inf$cov.r),
           tau2_del = num(inf$inf$tau2.del), QE_del = num(inf$inf$QE.del),
           hat = num(inf$inf$hat), weight = num(inf$inf$weight),
           dfbs = lapply(unclass(inf$dfbs)[seq_len(res$p)], num),
           is_infl = as.logical(inf$is.infl), text = txt(inf)))

  if (f$mods) next

  # ---- ranktest
  rk <- quiet(ranktest(res))
  add(f$name, "ranktest", list(), list(tau = num(rk$tau), pval = num(rk$pval), text = txt(rk)))

  # ---- trimfill: both estimators, side chosen and both sides
  for (est in c("L0", "R0")) {
    for (side in c("auto", "left", "right")) {
      tf <- if (side == "auto") trimfill(res, estimator = est) else
        trimfill(res, estimator = est, side = side)
      add(f$name, "trimfill", list(estimator = est, side = side),
          list(k0 = num(tf$k0), se_k0 = num(tf$se.k0), side = tf$side, p_k0 = num(tf$p.k0),
               beta = num(tf$beta), se = num(tf$se), zval = num(tf$zval), pval = num(tf$pval),
               ci_lb = num(tf$ci.lb), ci_ub = num(tf$ci.ub), tau2 = num(tf$tau2),
               QE = num(tf$QE), I2 = num(tf$I2), k = num(tf$k),
               yi = num(tf$yi), vi = num(tf$vi), fill = as.logical(tf$fill),
               text = txt(tf)))
    }
  }

  # ---- leave1out and cumul (order: year, or vi for normand1999)
  l1 <- leave1out(res)
  add(f$name, "leave1out", list(),
      c(list_rma(l1, c("estimate", "se", "zval", "tval", "pval", "ci.lb", "ci.ub", "Q", "Qp",
                       "tau2", "I2", "H2")), list(text = txt(l1))))
  cu <- cumul(res, order = d$order)
  add(f$name, "cumul", list(order = "order"),
      c(list_rma(cu, c("estimate", "se", "zval", "tval", "pvals", "ci.lb", "ci.ub", "Q", "Qp",
                       "tau2", "I2", "H2")), list(text = txt(cu))))

  if (f$method != "REML") next

  # ---- fsn: three types (Orwin also with a target and weighted)
  for (type in c("Rosenthal", "Orwin", "Rosenberg")) {
    fs <- fsn(d$yi, d$vi, type = type)
    add(f$name, "fsn", list(type = type),
        list(fsnum = num(fs$fsnum), pval = num(fs$pval), meanes = num(fs$meanes),
             target = num(fs$target), text = txt(fs)))
  }
  fs <- fsn(d$yi, d$vi, type = "Orwin", target = 0.1 * sign(mean(d$yi)))
  add(f$name, "fsn", list(type = "Orwin", target = 0.1 * sign(mean(d$yi))),
      list(fsnum = num(fs$fsnum), pval = NA, meanes = num(fs$meanes),
           target = num(fs$target), text = txt(fs)))
  fs <- fsn(d$yi, d$vi, type = "Orwin", weighted = TRUE)
  add(f$name, "fsn", list(type = "Orwin", weighted = TRUE),
      list(fsnum = num(fs$fsnum), pval = NA, meanes = num(fs$meanes),
           target = num(fs$target), text = txt(fs)))

  # ---- PET-PEESE by weighted least squares (lm with weights 1/vi)
  sei <- sqrt(d$vi)
  pet <- summary(lm(d$yi ~ sei, weights = 1 / d$vi))$coefficients
  peese <- summary(lm(d$yi ~ d$vi, weights = 1 / d$vi))$coefficients
  dfr <- length(d$yi) - 2
  ci <- function(cf) cf[1, 1] + c(-1, 1) * qt(0.975, dfr) * cf[1, 2]
  add(f$name, "pet_peese", list(),
      list(pet = list(est = pet[1, 1], se = pet[1, 2], tval = pet[1, 3], pval = pet[1, 4],
                      ci = ci(pet), slope_p = pet[2, 4]),
           peese = list(est = peese[1, 1], se = peese[1, 2], tval = peese[1, 3],
                        pval = peese[1, 4], ci = ci(peese)),
           df = dfr))
}

# ---------------------------------------------------------------- three-level Egger
ass <- dat.assink2016
mv <- rma.mv(yi, vi, mods = ~ sqrt(vi), random = ~ 1 | study / esid, data = ass)
mv_t <- rma.mv(yi, vi, mods = ~ sqrt(vi), random = ~ 1 | study / esid, data = ass, test = "t")
threelevel <- list(
  data = list(yi = num(ass$yi), vi = num(ass$vi), study = num(ass$study), esid = num(ass$esid),
              source = "dat.assink2016"),
  z = list(beta = num(mv$beta), se = num(mv$se), zval = num(mv$zval), pval = num(mv$pval),
           ci_lb = num(mv$ci.lb), ci_ub = num(mv$ci.ub), sigma2 = num(mv$sigma2)),
  t = list(beta = num(mv_t$beta), se = num(mv_t$se), zval = num(mv_t$zval),
           pval = num(mv_t$pval), ci_lb = num(mv_t$ci.lb), ci_ub = num(mv_t$ci.ub),
           ddf = num(mv_t$ddf))
)

# ---------------------------------------------------------------- sensitivity pieces
rho <- 0.6
ass$es_id <- ass$esid
ass_e <- escalc(measure = "GEN", yi = yi, vi = vi, data = ass)
agg <- aggregate(ass_e, cluster = study, struct = "CS", rho = rho)
m_agg <- rma(yi, vi, data = agg, method = "REML", test = "z")
pi_of <- function(m) { p <- predict(m); c(num(p$pi.lb), num(p$pi.ub)) }
uni <- function(m) list(k = m$k, est = num(m$beta), ci_lb = num(m$ci.lb), ci_ub = num(m$ci.ub),
                        pval = num(m$pval), I2 = num(m$I2), pi = pi_of(m))
m_all <- rma(yi, vi, data = ass, method = "REML")
lo <- do.call(rbind, lapply(split(ass, ass$study), function(s) s[which.min(s$yi), ]))
hi <- do.call(rbind, lapply(split(ass, ass$study), function(s) s[which.max(s$yi), ]))
m_lo <- rma(yi, vi, data = lo)
m_hi <- rma(yi, vi, data = hi)
lb <- ass$yi - qnorm(0.975) * sqrt(ass$vi)
ub <- ass$yi + qnorm(0.975) * sqrt(ass$vi)
outl <- ub < m_all$ci.lb | lb > m_all$ci.ub
m_out <- rma(yi, vi, data = ass[!outl, ])
infl <- influence(m_all)$is.infl
m_inf <- rma(yi, vi, data = ass[!infl, ])
rob <- ifelse(ass$year >= 3, "low", "high")  # a made-up risk-of-bias rating for the test
m_rob <- rma(yi, vi, data = ass[rob == "low", ])
m3 <- rma.mv(yi, vi, random = ~ 1 | study / esid, data = ass)
p3 <- predict(m3)
V <- impute_covariance_matrix(ass$vi, cluster = ass$study, r = rho)
che <- rma.mv(yi, V, random = ~ 1 | study / esid, data = ass)
che_r <- robust(che, cluster = ass$study, clubSandwich = TRUE)
pche <- predict(che_r)
i2_mv <- function(m) {
  W <- solve(m$V)
  X <- model.matrix(m)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  100 * sum(m$sigma2) / (sum(m$sigma2) + (m$k - m$p) / sum(diag(P)))
}
sensitivity <- list(
  rho = rho,
  rob = rob,
  overall = uni(m_all),
  combined = c(uni(m_agg), list(yi = num(agg$yi), vi = num(agg$vi))),
  lowest = uni(m_lo),
  highest = uni(m_hi),
  outliers = c(uni(m_out), list(removed = which(outl))),
  influence = c(uni(m_inf), list(removed = which(infl))),
  rob_low = uni(m_rob),
  threelevel = list(k = m3$k, est = num(m3$beta), ci_lb = num(m3$ci.lb), ci_ub = num(m3$ci.ub),
                    pval = num(m3$pval), I2 = i2_mv(m3), pi = c(num(p3$pi.lb), num(p3$pi.ub)),
                    sigma2 = num(m3$sigma2)),
  che = list(k = che_r$k, est = num(che_r$beta), ci_lb = num(che_r$ci.lb),
             ci_ub = num(che_r$ci.ub), pval = num(che_r$pval), ddf = num(che_r$ddf),
             se = num(che_r$se), I2 = i2_mv(che), pi = c(num(pche$pi.lb), num(pche$pi.ub)),
             sigma2 = num(che$sigma2))
)

out <- list(
  meta = list(metafor = as.character(packageVersion("metafor")),
              clubSandwich = as.character(packageVersion("clubSandwich")),
              R = R.version.string),
  datasets = datasets,
  fits = fits,
  cases = cases,
  threelevel = threelevel,
  sensitivity = sensitivity
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null",
                  pretty = FALSE),
           "tests/golden/bias.json")
cat("wrote tests/golden/bias.json with", length(cases), "cases\n")
