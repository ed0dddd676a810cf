# Divan node image. Build: docker build -t divan .
# Run:   docker run -p 5984:5984 -e COUCHDB_USER=admin -e COUCHDB_PASSWORD=secret -v divan-data:/data divan
# Node 24 is the current LTS; the code also runs on Node 20 and 22.
# The rocksdb package's prebuilt binary aborts (std::bad_alloc) when loaded on Node 22
# and later, so the build stage (the full image: it has g++, make and python3) builds
# it from source against the image's own Node headers, then checks it opens a store.
FROM node:24-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund --build-from-source --nodedir=/usr/local && node scripts/probe-rocksdb.js
COPY tsconfig.json ./
COPY proto ./proto
COPY src ./src
COPY test ./test
COPY loadtest ./loadtest
RUN npx tsc -p . && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    DIVAN_BIND_ADDRESS=0.0.0.0 \
    DIVAN_PORT=5984 \
    DIVAN_DATA_DIR=/data \
    DIVAN_GRPC_BIND_ADDRESS=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY proto ./proto
COPY package.json ./
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 5984 7984 17986
# SIGTERM stops the node cleanly (queued writes finish, the store closes).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "require('http').get('http://127.0.0.1:'+(process.env.DIVAN_PORT||5984)+'/_up',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
CMD ["node", "dist/src/node/main.js"]
