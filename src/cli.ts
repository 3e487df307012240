#!/usr/bin/env node
console.log('expo-worker');
