# syntax=docker/dockerfile:1
# pullpin's container image. Build from the repository root:
#   docker build -t ghcr.io/pullpin/pullpin:$(git rev-parse HEAD) .
# Three stages: build (all dependencies, TypeScript compile), prod-deps (runtime dependencies
# only) and the final distroless image, which holds dist/, the runtime node_modules and nothing
# else: no compiler, no npm, no shell, no test files, no certificates. Every stage runs Node 24
# LTS, the Node `npm test` runs the suite on besides the machine's own (scripts/node24.sh).

# ---- build: npm ci with dev dependencies, then tsc ----
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- prod-deps: production dependencies only ----
FROM node:24-bookworm-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime: distroless Node 24 LTS, non-root ----
FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# package.json: `pullpin version` and the ESM "type"; examples/: the default --config.
COPY package.json ./
COPY examples ./examples
# 65532 is distroless's "nonroot"; numeric, so the kubelet can enforce runAsNonRoot.
USER 65532:65532
EXPOSE 8443
# Certificates come from a mounted Secret (--tls-cert/--tls-key) or are made at start in
# --certs-dir (an emptyDir in the chart); none is baked into the image.
ENTRYPOINT ["/nodejs/bin/node", "dist/cli.js"]
CMD ["serve", "--certs-dir=/tmp/certs"]
